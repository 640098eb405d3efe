"""The learned router: the shipped artifact, its features, the data loader (contaminated prompts
out), the training command, and how anchor predictions place every other model."""

from __future__ import annotations

import csv
import json
import zlib
from pathlib import Path

import pytest

from somaagent.errors import ConfigurationError
from somaagent.llm.learned import data as routellm
from somaagent.llm.learned.features import DENSE_NAMES, featurize
from somaagent.llm.learned.model import DEFAULT_ARTIFACT, LearnedRouter, load_default
from somaagent.llm.learned.quality import QualityEstimator
from somaagent.llm.learned.train import main as train_main
from somaagent.llm.registry import ModelRegistry

GSM = (
    "A store sells pencils at 3 for $1.20 and pens at $2.35 each. Maria buys 18 pencils and "
    "some pens, pays with a $50 bill and gets $21.35 back. How many pens did she buy?"
)


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def test_the_shipped_artifact_is_small_and_loads() -> None:
    assert DEFAULT_ARTIFACT.stat().st_size < 300_000
    model = load_default()
    assert model is not None
    registry = ModelRegistry.load()
    assert registry.get(model.weak_anchor.name).name == "mixtral-8x7b"
    assert registry.get(model.strong_anchor.name).name == "gpt-4-1106-preview"
    training = model.training
    assert training["contaminated_dropped"] == {"gsm8k": 12, "mmlu": 5, "mt_bench": 8}
    assert set(training["train_prompts"]) == {"gsm8k", "mmlu", "mt_bench"}
    prediction = model.predict(user(GSM))  # type: ignore[arg-type]
    assert 0.0 < prediction.weak < prediction.strong < 1.0


def test_broken_artifacts_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"somaagent\.llm\.learned\.train"):
        LearnedRouter.load(tmp_path / "missing.json")
    document = json.loads(DEFAULT_ARTIFACT.read_text())
    with pytest.raises(ConfigurationError, match="format"):
        LearnedRouter.from_dict({**document, "format": "other/9"})
    with pytest.raises(ConfigurationError, match="dense features"):
        LearnedRouter.from_dict({**document, "dense_names": ["length"]})
    truncated = json.loads(json.dumps(document))
    truncated["heads"]["weak"]["hashed_f16"] = "AAAA"
    with pytest.raises(ConfigurationError, match="float16 weights"):
        LearnedRouter.from_dict(truncated)
    with pytest.raises(ConfigurationError, match="not a valid"):
        LearnedRouter.from_dict({"format": document["format"], "dense_names": list(DENSE_NAMES)})


def test_features_are_stable_across_processes() -> None:
    features = featurize(user("Hello hello world 42"), hash_bits=10)  # type: ignore[arg-type]
    mask = (1 << 10) - 1
    expected = {zlib.crc32(t.encode()) & mask for t in ("hello", "world", "<num2>")}
    expected |= {zlib.crc32(t.encode()) & mask for t in ("hello hello", "hello world")}
    expected.add(zlib.crc32(b"world <num2>") & mask)
    category = features.complexity.category  # words are also conjoined with the task category
    expected |= {
        zlib.crc32(f"{category}|{t}".encode()) & mask for t in ("hello", "world", "<num2>")
    }
    assert set(features.hashed) == expected
    assert features.scale == pytest.approx(len(expected) ** -0.5)
    assert len(features.dense) == len(DENSE_NAMES)


def test_anchors_get_their_own_predictions_and_others_are_placed_by_ability() -> None:
    model = load_default()
    assert model is not None
    registry = ModelRegistry.load()
    estimator = QualityEstimator(model)
    estimate = estimator.estimate(user(GSM))  # type: ignore[arg-type]
    assert estimate.prediction is not None
    weak = estimator.quality(registry.get("mixtral-8x7b"), estimate)
    strong = estimator.quality(registry.get("gpt-4-1106-preview"), estimate)
    assert weak == pytest.approx(estimate.prediction.weak, abs=1e-3)
    assert strong == pytest.approx(estimate.prediction.strong, abs=1e-3)
    by_math = sorted(registry.all(), key=lambda s: s.quality.for_task("math"))
    predicted = [estimator.quality(s, estimate) for s in by_math]
    assert predicted == sorted(predicted)  # more able at maths: predicted better here
    assert estimator.quality(registry.get("gpt-5"), estimate) > strong


# -- data and training -----------------------------------------------------------------------


def write_tiny_routellm(root: Path) -> None:
    """A few prompts per dataset in RouteLLM's layout, one of them listed as contaminated."""
    weak, strong = routellm.WEAK_MODEL, routellm.STRONG_MODEL
    (root / "gsm8k").mkdir(parents=True)
    with (root / "gsm8k" / "gsm8k_responses.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", weak, strong, f"{weak}_response", f"{strong}_response"])
        for i in range(40):
            hard = i % 2 == 0
            prompt = f"Tom has {i} apples and buys {i * 7} more at $3 each. " + (
                "Then he sells half, and gives a third to each of his 5 friends. How many?"
                if hard
                else "How many?"
            )
            writer.writerow([prompt, str(not hard), "True", "#### 1", "#### 2"])
    (root / "gsm8k" / "contaminated_prompts.jsonl").write_text(
        json.dumps({"eval_prompt": "Tom has 1 apples and buys 7 more at $3 each. How many?"}) + "\n"
    )
    (root / "mmlu").mkdir()
    with (root / "mmlu" / "mmlu_anatomy.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["prompt", weak, strong])
        for i in range(30):
            writer.writerow(
                [
                    f"Question {i} about bones?\nA. a\nB. b\nC. c\nD. d\nAnswer:",
                    str(i % 3 != 0),
                    "True",
                ]
            )
    (root / "mt_bench").mkdir()
    questions, judgements = [], []
    for qid in range(81, 91):
        questions.append(
            {
                "question_id": qid,
                "category": "writing",
                "turns": [f"Write poem number {qid}.", "Shorter, please."],
            }
        )
        for model, score in ((weak, 8), (strong, 9)):
            for turn in (1, 2):
                judgements.append(
                    {
                        "question_id": qid,
                        "model": model,
                        "score": score,
                        "turn": turn,
                        "user_prompt": "...",
                        "judge": ["gpt-4", "x"],
                    }
                )
    (root / "mt_bench" / "question.jsonl").write_text(
        "".join(json.dumps(q) + "\n" for q in questions)
    )
    (root / "mt_bench" / "judgements.jsonl").write_text(
        "".join(json.dumps(j) + "\n" for j in judgements)
    )


def test_contaminated_prompts_are_dropped(tmp_path: Path) -> None:
    write_tiny_routellm(tmp_path)
    loaded = routellm.load(tmp_path)
    assert loaded.contaminated == {"gsm8k": 1, "mmlu": 0, "mt_bench": 0}
    prompts = {o.prompt for o in loaded.outcomes}
    assert "Tom has 1 apples and buys 7 more at $3 each. How many?" not in prompts
    assert len(loaded.outcomes) == 39 + 30 + 10
    mt = [o for o in loaded.outcomes if o.dataset == "mt_bench"]
    assert mt[0].weak == pytest.approx(0.8) and mt[0].turns[1] == "Shorter, please."


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(routellm.ENV_VAR, str(tmp_path / "nowhere"))
    with pytest.raises(routellm.DataMissingError, match=routellm.ENV_VAR):
        routellm.load()


def test_the_training_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_tiny_routellm(tmp_path / "data")
    out = tmp_path / "model.json"
    code = train_main(
        ["--data", str(tmp_path / "data"), "--out", str(out), "--hash-bits", "8", "--epochs", "60"]
    )
    assert code == 0 and "wrote" in capsys.readouterr().out
    model = LearnedRouter.load(out)
    assert model.hash_bits == 8
    held = sum(1 for o in routellm.load(tmp_path / "data").outcomes if routellm.fold_of(o, 5) == 0)
    assert sum(model.training["train_prompts"].values()) == 79 - held
    assert model.training["contaminated_dropped"]["gsm8k"] == 1
    hard = model.predict(
        user(  # type: ignore[arg-type]
            "Tom has 4 apples and buys 28 more at $3 each. Then he sells half, and gives a third "
            "to each of his 5 friends. How many?"
        )
    )
    easy = model.predict(user("Tom has 5 apples and buys 35 more at $3 each. How many?"))  # type: ignore[arg-type]
    assert hard.weak < easy.weak


def test_the_training_command_skips_without_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = train_main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "m.json")])
    assert code == 2
    assert "skipped: RouteLLM data not found" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_the_vendored_sample_keeps_the_real_layout() -> None:
    """The real data's layout, from the vendored sample (tests/data/routellm): it runs on a
    fresh clone; the full data's counts are in bench/results/router.json."""
    loaded = routellm.load(Path(__file__).resolve().parents[1] / "data" / "routellm")
    mt = [o for o in loaded.outcomes if o.dataset == "mt_bench"]
    assert loaded.contaminated["mt_bench"] == 8 and len(mt) == 72
    assert all(len(o.weak_answers) == 2 and len(o.strong_answers) == 2 for o in mt)
    gsm = [o for o in loaded.outcomes if o.dataset == "gsm8k"]
    assert all(o.weak_answers and o.strong_answers for o in gsm)
