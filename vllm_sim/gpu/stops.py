"""Stop strings, exactly as vLLM applies them to streamed text. Pure: no I/O, no clock.

vLLM checks each new piece of text against the stop strings in list order (the first one
found wins, not the earliest in the text), cuts the text where the stop string begins (unless
`include_stop_str_in_output`), and while a sequence runs it holds back the last
max(len(stop)) - 1 characters, which could still turn out to start a stop string. That is why
real streams carry `"text":""` chunks when stop strings are set.
"""

from __future__ import annotations


class StopScanner:
    """Feed token texts one at a time; each call says what text to release now."""

    __slots__ = ("_stops", "_include", "_hold", "text", "released", "stop_reason")

    def __init__(self, stops: tuple[str, ...] = (), include_stop_str_in_output: bool = False):
        self._stops = tuple(s for s in stops if s)
        self._include = include_stop_str_in_output
        longest = max((len(s) for s in self._stops), default=0)
        self._hold = 0 if include_stop_str_in_output or not longest else longest - 1
        self.text = ""  # everything generated so far, cut at a matched stop string
        self.released = 0  # how much of `text` has been released
        self.stop_reason: str | None = None  # the stop string that ended the sequence

    def feed(self, token: str) -> str:
        """Add one token's text; returns the newly released text ("" while held back)."""
        if self.stop_reason is not None:
            raise ValueError("the sequence already stopped")
        self.text += token
        cut = self._match(len(token))
        if cut is not None:
            return self.flush(cut)
        end = len(self.text) - self._hold
        if end <= self.released:
            return ""
        delta = self.text[self.released : end]
        self.released = end
        return delta

    def flush(self, end: int | None = None) -> str:
        """Release everything held back (the sequence finished), up to `end` if given."""
        end = len(self.text) if end is None else end
        delta = self.text[self.released : end]
        self.released = end
        return delta

    def _match(self, new_chars: int) -> int | None:
        if not new_chars:
            return None
        text = self.text
        for stop in self._stops:
            # Only where the new characters could complete it (vLLM searches the same window).
            index = text.find(stop, max(0, len(text) + 1 - new_chars - len(stop)))
            if index < 0:
                continue
            self.stop_reason = stop
            if self._include:
                index = min(index + len(stop), len(text))
            self.text = text[:index]
            return index
        return None
