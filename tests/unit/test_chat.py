from engine.tasks import TASKS, humaneval
from engine.tasks.chat import fenced_messages as chat_messages
from sandbox import check_program

PROMPT = 'def add(a, b):\n    """Add two numbers."""\n'


def extract_completion(answer: str, entry_point: str) -> str:
    """HumanEval's extraction, for a problem whose function is `entry_point`."""
    return TASKS["humaneval"].extract(humaneval.problem("T/0", PROMPT, "", entry_point), answer)


def test_messages_carry_the_system_prompt_and_the_function():
    messages = chat_messages("Be brief.", PROMPT)
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["role"] == "user" and PROMPT.rstrip() in messages[1]["content"]
    assert chat_messages("", PROMPT)[0]["role"] == "user"


def test_whole_function_in_a_fence_replaces_the_stub():
    answer = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```\nHope it helps."
    completion = extract_completion(answer, "add")
    assert completion == "\ndef add(a, b):\n    return a + b\n"
    namespace = {}
    exec(check_program(PROMPT + completion, "def check(f):\n    assert f(2, 3) == 5\n", "add"), namespace)


def test_body_only_and_unterminated_fences():
    assert extract_completion("```\n    return a + b\n```", "add") == "    return a + b\n"
    assert extract_completion("```py\n    return a + b", "add") == "    return a + b"  # cut by max_tokens
    assert extract_completion("    return a + b\n", "add") == "    return a + b\n"  # no fence at all


def test_first_fence_wins_and_other_functions_do_not_count_as_the_entry_point():
    answer = "```python\ndef helper(x):\n    return x\n```\n```python\ndef add(a, b): ...\n```"
    assert extract_completion(answer, "add") == "def helper(x):\n    return x\n"
