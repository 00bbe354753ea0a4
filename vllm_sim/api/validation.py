"""FastAPI and pydantic's part of vLLM 0.32's request handling: the JSON body decoded, then its
fields validated one by one in lax mode, every error collected in field order and worded as
FastAPI reports them. `protocol` builds vLLM's own checks on top. Pure: no I/O.
"""

from __future__ import annotations

import json

import orjson

from vllm_sim.model.instruct import Message

MAX_STOP_STRINGS = 4  # vLLM 0.32's limit on a request's `stop` list
_SHOWN_ERRORS = 10  # FastAPI's message lists this many validation errors, then "...and N more errors"


class APIError(Exception):
    """An error response: status, and the body's message, type and param."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "BadRequestError",
        param: str | None = None,
        in_band: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.in_band = in_band


def decode_body(body: bytes) -> dict:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        # orjson's messages differ from the stdlib's, which pydantic reports: ask the stdlib.
        try:
            json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            pos, msg = getattr(exc, "pos", 0), getattr(exc, "msg", "Invalid UTF-8")
            raise _validation_error(
                [_error("json_invalid", f"body.{pos}", "JSON decode error", {}, ctx={"error": msg})]
            ) from None
        raise _validation_error([_error("json_invalid", "body", "JSON decode error", {})]) from None
    if not isinstance(data, dict):
        raise _validation_error(
            [
                _error(
                    "model_attributes_type",
                    "body",
                    "Input should be a valid dictionary or object to extract fields from",
                    data,
                )
            ]
        )
    return data


def _shown(value) -> str:
    """How vLLM shows a rejected input: containers by size, anything else as its str()."""
    if isinstance(value, dict):
        return f"<dict of {len(value)} items>"
    if isinstance(value, list):
        return f"<list of {len(value)} items>"
    return str(value)


def _error(type: str, loc: str, msg: str, value, ctx: dict | None = None) -> dict:
    error: dict[str, object] = {"type": type, "loc": loc, "msg": msg, "input": _shown(value)}
    if ctx is not None:
        error["ctx"] = ctx
    return error


def _validation_error(errors: list[dict]) -> APIError:
    # FastAPI's request validation, as vLLM words it: note the type "Bad Request", not "BadRequestError".
    count = len(errors)
    lines = [repr(e) for e in errors[:_SHOWN_ERRORS]]
    if count > _SHOWN_ERRORS:
        lines.append(f"...and {count - _SHOWN_ERRORS} more errors")
    message = f"{count} validation error{'s' if count != 1 else ''}:\n  " + "\n  ".join(lines)
    return APIError(400, message, "Bad Request", errors[0]["loc"])


def _int_errors(value, loc: str) -> list[dict]:
    """pydantic's lax int: bools, integral floats and numeric strings pass."""
    if isinstance(value, int):
        return []
    if isinstance(value, float):
        if value.is_integer():
            return []
        return [
            _error(
                "int_from_float",
                loc,
                "Input should be a valid integer, got a number with a fractional part",
                value,
            )
        ]
    if isinstance(value, str):
        try:
            int(value.strip())
            return []
        except ValueError:
            return [
                _error(
                    "int_parsing",
                    loc,
                    "Input should be a valid integer, unable to parse string as an integer",
                    value,
                )
            ]
    return [_error("int_type", loc, "Input should be a valid integer", value)]


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}
_ROLES = ("developer", "system", "user", "assistant", "tool", "function")


class Fields:
    """The body's fields validated one by one, errors collected in order; `check` raises them."""

    def __init__(self, data: dict):
        self.data = data
        self.errors: list[dict] = []

    def check(self) -> None:
        if self.errors:
            raise _validation_error(self.errors)

    def _fail(self, errors: list[dict]) -> None:
        self.errors.extend(errors)

    def integer(self, name: str) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        errors = _int_errors(value, f"body.{name}")
        self._fail(errors)
        return None if errors else int(value.strip() if isinstance(value, str) else value)

    def number(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                self._fail(
                    [
                        _error(
                            "float_parsing",
                            f"body.{name}",
                            "Input should be a valid number, unable to parse string as a number",
                            value,
                        )
                    ]
                )
                return None
        self._fail([_error("float_type", f"body.{name}", "Input should be a valid number", value)])
        return None

    def boolean(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        kind = "bool_parsing" if isinstance(value, str) else "bool_type"
        msg = "Input should be a valid boolean" + (
            ", unable to interpret input" if isinstance(value, str) else ""
        )
        self._fail([_error(kind, f"body.{name}", msg, value)])
        return None

    def string(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is None or isinstance(value, str):
            return value
        self._fail([_error("string_type", f"body.{name}", "Input should be a valid string", value)])
        return None

    def options(self, name: str) -> dict | None:
        value = self.data.get(name)
        if value is None or isinstance(value, dict):
            return value
        self._fail(
            [
                _error(
                    "model_attributes_type",
                    f"body.{name}",
                    "Input should be a valid dictionary or object to extract fields from",
                    value,
                )
            ]
        )
        return None

    def stop(self, name: str) -> tuple[str, ...]:
        """str | list[str] of at most MAX_STOP_STRINGS (vLLM 0.32 refuses a fifth, capture 86)."""
        value = self.data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        loc = f"body.{name}"
        if isinstance(value, list) and all(isinstance(s, str) for s in value):
            if len(value) <= MAX_STOP_STRINGS:
                return tuple(value)
            self._fail(
                [
                    _error("string_type", loc, "Input should be a valid string", value),
                    _error(
                        "too_long",
                        loc,
                        f"List should have at most {MAX_STOP_STRINGS} items after validation, not "
                        f"{len(value)}",
                        value,
                        {"field_type": "List", "max_length": MAX_STOP_STRINGS, "actual_length": len(value)},
                    ),
                ]
            )
            return ()
        errors = [_error("string_type", loc, "Input should be a valid string", value)]
        if isinstance(value, list):
            errors += [
                _error("string_type", f"{loc}.{i}", "Input should be a valid string", s)
                for i, s in enumerate(value)
                if not isinstance(s, str)
            ]
        else:
            errors.append(_error("list_type", loc, "Input should be a valid list", value))
        self._fail(errors)
        return ()

    def prompt(self, name: str) -> tuple[str | tuple[int, ...], ...]:
        """list[int] | list[list[int]] | str | list[str]: the errors of every member, in order."""
        value = self.data.get(name)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        loc = f"body.{name}"
        if isinstance(value, list) and all(isinstance(p, str) for p in value):
            return tuple(value)
        if isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return (tuple(value),) if value else ()
        as_ids: list[dict] = []
        as_lists: list[dict] = []
        as_texts: list[dict] = []
        if isinstance(value, list):
            for i, item in enumerate(value):
                as_ids += _int_errors(item, f"{loc}.{i}")
                if isinstance(item, list):
                    for j, token in enumerate(item):
                        as_lists += _int_errors(token, f"{loc}.{i}.{j}")
                else:
                    as_lists.append(_error("list_type", f"{loc}.{i}", "Input should be a valid list", item))
                if not isinstance(item, str):
                    as_texts.append(
                        _error("string_type", f"{loc}.{i}", "Input should be a valid string", item)
                    )
        else:
            as_ids = as_lists = as_texts = [_error("list_type", loc, "Input should be a valid list", value)]
        if not as_lists:
            return tuple(tuple(int(t) for t in p) for p in value)
        if not as_ids:
            return (tuple(int(t) for t in value),)
        self._fail(
            as_ids
            + as_lists
            + [_error("string_type", loc, "Input should be a valid string", value)]
            + as_texts
        )
        return ()

    def messages(self, name: str) -> tuple[Message, ...]:
        """A list of messages: {"role", "content"}, content a string or a list of text parts."""
        if name not in self.data:
            self._fail([_error("missing", f"body.{name}", "Field required", self.data)])
            return ()
        value = self.data[name]
        loc = f"body.{name}"
        if not isinstance(value, list):
            self._fail([_error("list_type", loc, "Input should be a valid list", value)])
            return ()
        out = []
        for i, message in enumerate(value):
            errors = _message_errors(message, f"{loc}.{i}")
            if errors:
                self._fail(errors)
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = "\n".join(p["text"] for p in content)
            out.append(Message(message["role"], content or ""))
        return tuple(out)


def _message_errors(message, loc: str) -> list[dict]:
    """pydantic's errors for one message of the union vLLM accepts (only what matters here:
    a role that is a string, content that is a string or text parts, None for the assistant)."""
    members = (
        "ChatCompletionDeveloperMessageParam",
        "ChatCompletionSystemMessageParam",
        "ChatCompletionUserMessageParam",
        "ChatCompletionAssistantMessageParam",
        "ChatCompletionToolMessageParam",
        "ChatCompletionFunctionMessageParam",
        "CustomChatCompletionMessageParam",
    )
    if not isinstance(message, dict):
        return [
            _error("dict_type", f"{loc}.{m}", "Input should be a valid dictionary", message) for m in members
        ] + [
            _error(
                "model_attributes_type",
                f"{loc}.Message",
                "Input should be a valid dictionary or object to extract fields from",
                message,
            )
        ]
    role, content = message.get("role"), message.get("content")
    text_parts = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    )
    content_ok = isinstance(content, str) or text_parts or (content is None and role == "assistant")
    if isinstance(role, str) and content_ok:
        return []
    errors: list[dict] = []

    def role_errors(member: str, expected: str) -> list[dict]:
        at = f"{loc}.{member}.role"
        if "role" not in message:
            return [_error("missing", at, "Field required", message)]
        if role == expected:
            return []
        return [
            _error(
                "literal_error", at, f"Input should be '{expected}'", role, ctx={"expected": f"'{expected}'"}
            )
        ]

    def content_errors(member: str, optional: bool = False, texts: bool = True) -> list[dict]:
        if content_ok or (optional and content is None):
            return []
        at = f"{loc}.{member}.content"
        errors = [_error("string_type", at, "Input should be a valid string", content)]
        return (
            errors + [_error("iterable_type", at, "Input should be iterable", content)] if texts else errors
        )

    for member, expected in zip(members[:3], _ROLES[:3]):
        errors += content_errors(member) + role_errors(member, expected)
    errors += role_errors(members[3], "assistant") + content_errors(members[3], optional=True)
    errors += content_errors(members[4]) + role_errors(members[4], "tool")
    if "tool_call_id" not in message:
        errors.append(_error("missing", f"{loc}.{members[4]}.tool_call_id", "Field required", message))
    if "name" not in message:
        errors.append(_error("missing", f"{loc}.{members[5]}.name", "Field required", message))
    errors += role_errors(members[5], "function") + content_errors(members[5], optional=True, texts=False)
    at = f"{loc}.{members[6]}.role"
    if "role" not in message:
        errors.append(_error("missing", at, "Field required", message))
    elif not isinstance(role, str):
        errors.append(_error("string_type", at, "Input should be a valid string", role))
    errors += content_errors(members[6])
    if "author" not in message:
        errors.append(_error("missing", f"{loc}.Message.author", "Field required", message))
    errors.append(
        _error("missing", f"{loc}.Message.content", "Field required", message)
    )  # (never shown: 11th+)
    return errors
