"""Complexity estimation: categories, difficulty ordering, language, answer length, speed."""

from __future__ import annotations

import time

import pytest

from somaagent.llm.base import ChatMessage
from somaagent.llm.complexity import estimate_complexity, extract_features


def user(text: str) -> list[ChatMessage]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("prompt", "category"),
    [
        ("Write a Python function that parses a CSV file and add unit tests.", "coding"),
        ("```\ndef f(x):\n    return x +\n```\nWhy does this raise a SyntaxError?", "coding"),
        (
            "A train travels 120 miles in 2 hours, then 90 miles in 1.5 hours. What is its "
            "average speed in miles per hour?",
            "math",
        ),
        ("Solve for x: 3x^2 - 12 = 0", "math"),
        (
            "Why did the Roman Republic collapse? Compare the economic and military "
            "explanations and evaluate which argument is stronger.",
            "reasoning",
        ),
        ("Compose a short poem about autumn leaves in the style of Basho.", "writing"),
        (
            "Extract every person's name from the following text and return them as JSON.",
            "extraction",
        ),
        ("hi! how are you doing today?", "chat"),
    ],
)
def test_category(prompt: str, category: str) -> None:
    assert estimate_complexity(user(prompt)).category == category


def test_harder_prompts_score_higher() -> None:
    easy = estimate_complexity(user("What is the capital of France?")).difficulty
    medium = estimate_complexity(
        user("Summarise the plot of Hamlet in three sentences for a school report.")
    ).difficulty
    hard = estimate_complexity(
        user(
            "Prove that there are infinitely many primes p with p = 3 (mod 4). First state the "
            "lemma you need, then prove it step by step, and finally explain why the same "
            "argument fails for p = 1 (mod 4)."
        )
    ).difficulty
    assert 0.0 <= easy < medium < hard <= 1.0


def test_features_measure_length_code_maths_steps_and_reasoning() -> None:
    f = extract_features(
        user(
            "1. Read the file.\n2. Compute the mean and the variance of column 3.\n"
            "3. Then explain why the variance is larger than expected.\n"
            "```python\nimport csv\n```"
        )
    )
    assert f.list_items == 3
    assert f.code > 0.5
    assert f.math > 0.3
    assert f.multi_step > 0.5
    assert f.reasoning > 0.3
    assert f.words > 20
    assert f.language == "en"


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("¿Cuál es la capital de Francia y por qué es importante para la historia?", "es"),
        ("Quelle est la capitale de la France et pourquoi est-elle importante ?", "fr"),
        ("Was ist die Hauptstadt von Deutschland und warum ist sie nicht größer?", "de"),
        ("请解释量子纠缠是什么，以及它和超导有什么关系？", "zh"),
        ("量子もつれとは何ですか？わかりやすく説明してください。", "ja"),
        ("Объясните, что такое квантовая запутанность.", "ru"),
        ("What is quantum entanglement?", "en"),
    ],
)
def test_language(text: str, language: str) -> None:
    assert extract_features(user(text)).language == language


def test_a_foreign_language_prompt_is_harder_than_the_same_in_english() -> None:
    english = estimate_complexity(user("What is the capital of France and why?")).difficulty
    chinese = estimate_complexity(user("法国的首都是哪里？为什么？")).difficulty
    assert chinese > english


def test_multiple_choice_expects_a_short_answer() -> None:
    c = estimate_complexity(
        user("Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Earth\nAnswer:")
    )
    assert c.features.multiple_choice
    assert c.expected_output_tokens <= 20
    essay = estimate_complexity(user("Write a long essay on the history of the printing press."))
    assert essay.expected_output_tokens > 300


def test_the_last_user_message_is_read_and_the_whole_conversation_counted() -> None:
    messages: list[ChatMessage] = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Write a Python script that renames files."},
        {"role": "assistant", "content": "Here it is: ..."},
        {"role": "user", "content": "Thanks! Now a haiku about it, please."},
    ]
    c = estimate_complexity(messages)
    assert c.category == "writing"
    assert c.features.user_turns == 2
    assert c.features.chars == sum(len(m["content"]) for m in messages)


def test_overrides_and_required_capabilities_pass_through() -> None:
    c = estimate_complexity(user("hello"), category="coding", capabilities=["vision", "tools"])
    assert c.category == "coding"
    assert c.capabilities == {"vision", "tools"}


def test_empty_and_odd_inputs() -> None:
    assert estimate_complexity([]).category == "chat"
    assert estimate_complexity(user("")).features.language == "und"
    assert estimate_complexity([{"role": "system", "content": "be terse"}]).difficulty < 0.5


def test_long_prompts_stay_fast() -> None:
    prompt = user("The quick brown fox jumps over the lazy dog 12 + 4 = 16; " * 4000)
    estimate_complexity(prompt)
    started = time.perf_counter()
    for _ in range(20):
        estimate_complexity(prompt)
    per_call_ms = (time.perf_counter() - started) / 20 * 1000
    assert per_call_ms < 25  # ~2 ms here; generous for a shared 2-core machine
