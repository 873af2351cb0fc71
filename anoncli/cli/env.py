"""`anoncli env`: what this installation is, and whether every backend really works.

Modelled on the `env` commands of ML command-line tools: versions, device,
model store, then a health check that exercises each backend the default
paths need (a resample op runs, the compiled McAdams kernel loads and runs,
the resemblyzer weights load, the pocketsphinx model loads, ...). Exit 0 when
every check passes; otherwise EXIT_UNHEALTHY with one line per broken backend
on stderr.
"""

import importlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import typer

from anoncli.cli.output import FormatOption, QuietOption, check_format, emit, print_rows
from anoncli.errors import EXIT_UNHEALTHY

PACKAGES = (
    "torch",
    "torchaudio",
    "numpy",
    "numba",
    "soundfile",
    "soxr",
    "pyarrow",
    "speechbrain",
    "resemblyzer",
    "pocketsphinx",
    "pyworld",
    "pystoi",
    "safetensors",
    "silero-vad",
    "dask",
    "distributed",
    "typer",
)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---- health checks: each returns a short detail string, or raises ------------------------------


def _check_torchaudio() -> str:
    import torch
    import torchaudio.functional as F

    out = F.resample(torch.sin(torch.arange(16000) * 0.05).unsqueeze(0), 16000, 8000)
    if out.shape[-1] != 8000:
        raise RuntimeError(f"resample 16000->8000 Hz gave {out.shape[-1]} samples, expected 8000")
    return "resample 16 kHz -> 8 kHz ran"


def _check_soxr() -> str:
    import numpy as np
    import soxr

    out = soxr.resample(np.zeros(44101, dtype=np.float32), 44101, 16000)
    if abs(len(out) - 16000) > 1:
        raise RuntimeError(f"resample 44101->16000 Hz gave {len(out)} samples")
    return "resample 44101 Hz -> 16 kHz ran"


def _check_soundfile() -> str:
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(1600, dtype=np.float32), 16000, format="FLAC", subtype="PCM_16")
    buffer.seek(0)
    data, rate = sf.read(buffer)
    if rate != 16000 or len(data) != 1600:
        raise RuntimeError("FLAC round trip changed the audio")
    return f"libsndfile {sf.__libsndfile_version__}: FLAC round trip"


def _check_mcadams_kernel() -> str:
    """The lean CPU path of `anonymize`: numpy in, the compiled kernel (numba's on-disk cache), numpy out."""
    import numpy as np

    from anoncli.dsp.mcadams_kernel import cache_state
    from anoncli.methods import MethodOptions, create_method

    method = create_method("mcadams", MethodOptions(device="cpu", extra={"backend": "compiled"}))
    if method.tensor_inputs:
        raise RuntimeError("the compiled McAdams backend asks for torch tensors (the lean CPU path is broken)")
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    out = method.process([wave], [{"alpha": 0.8, "highpass": True}])[0].audio
    if not isinstance(out, np.ndarray) or out.shape != wave.shape or not np.isfinite(out).all():
        raise RuntimeError("the compiled kernel returned a bad signal")
    state = cache_state()
    how = (
        "compiled on first use and cached"
        if state["compiled_here"]
        else "compiled on first use (in a child process), cached and loaded"
        if state["compiled_in_child"]
        else "loaded from cache"
    )
    return f"compiled kernel {how} in {state['cache_dir']}; ran on numpy input"


def _check_resemblyzer() -> str:
    import warnings

    with warnings.catch_warnings():  # its VAD dependency imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        from resemblyzer import VoiceEncoder

    encoder = VoiceEncoder(device="cpu", verbose=False)
    n = sum(p.numel() for p in encoder.parameters())
    return f"speaker encoder weights loaded ({n} parameters)"


def _check_pocketsphinx() -> str:
    from pocketsphinx import Decoder, get_model_path

    Decoder(hmm=os.path.join(get_model_path(), "en-us", "en-us"), loglevel="FATAL")
    return "US-English acoustic model loaded"


def _check_pyworld() -> str:
    import numpy as np
    import pyworld

    x = np.sin(2 * np.pi * 150 * np.arange(8000) / 16000)
    f0, _ = pyworld.dio(x, 16000)
    if not (np.median(f0[f0 > 0]) > 100):
        raise RuntimeError("dio did not find the 150 Hz test tone")
    return "dio found a 150 Hz tone"


def _check_pyarrow() -> str:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1, 2]}), buffer)
    return "Parquet write ran"


def _check_speechbrain() -> str:
    import torch
    from speechbrain.utils.metric_stats import EER

    eer, _ = EER(torch.tensor([0.9, 0.8]), torch.tensor([0.1, 0.2]))
    if eer != 0:
        raise RuntimeError(f"EER of separable scores is {eer}, expected 0")
    return "EER ran"


def _check_silero_vad() -> str:
    import numpy as np

    from anoncli.evaluation.vad import FRAME, THRESHOLD, load_vad, model_name, speech_probabilities

    load_vad()
    probs = speech_probabilities(np.zeros(16000, dtype=np.float32))
    if probs.shape != (-(-16000 // FRAME),) or not np.all((probs >= 0) & (probs < THRESHOLD)):
        raise RuntimeError(f"1 s of silence gave {probs.shape[0]} frame probabilities, not all in [0, {THRESHOLD})")
    return f"{model_name()} bundled TorchScript model loaded; 1 s of silence scored as no speech"


def _check_dask() -> str:
    from dask.distributed import Client

    return f"dask.distributed imports ({Client.__name__})"


CHECKS: dict[str, tuple[Callable[[], str], str]] = {
    # name -> (check, what needs it)
    "soundfile": (_check_soundfile, "decoding and writing audio"),
    "soxr": (_check_soxr, "CPU resampling"),
    "torchaudio": (_check_torchaudio, "GPU resampling, mel front end"),
    "mcadams-kernel": (_check_mcadams_kernel, "the default method on CPU"),
    "pyarrow": (_check_pyarrow, "manifests"),
    "resemblyzer": (_check_resemblyzer, "scores and evaluate: speaker embeddings"),
    "pyworld": (_check_pyworld, "F0 r, WORLD vocoder"),
    "pocketsphinx": (_check_pocketsphinx, "evaluate: ASR"),
    "speechbrain": (_check_speechbrain, "evaluate: EER and minDCF"),
    "silero-vad": (_check_silero_vad, "evaluate: vad (speech-presence detector)"),
    "dask": (_check_dask, "--backend dask"),
}


def run_checks(names: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the health checks; each result has name, ok, seconds, detail (or the error)."""
    results = []
    for name, (check, needed_for) in CHECKS.items():
        if names and name not in names:
            continue
        start = time.perf_counter()
        try:
            detail, ok = check(), True
        except Exception as err:  # a broken backend is reported, whatever it raised
            first = str(err).splitlines()[0] if str(err) else ""
            detail, ok = f"{type(err).__name__}: {first}", False
        results.append(
            {
                "name": name,
                "ok": ok,
                "seconds": round(time.perf_counter() - start, 3),
                "needed_for": needed_for,
                "detail": detail,
            }
        )
    return results


def _device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda, "gpus": []}
    if info["cuda_available"]:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["gpus"].append(
                {"index": index, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
            )
    return info


def collect(checks: bool = True) -> dict[str, Any]:
    """Everything `anoncli env` reports, as a JSON-ready dict."""
    from anoncli import __version__, modelstore

    report: dict[str, Any] = {
        "anoncli": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "os": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "packages": {name: _version(name) for name in PACKAGES},
        "device": _device_info(),
        "model_store": str(modelstore.store_root()),
        "models": modelstore.list_models(),
        "data_licences": shipped_data_licences(),
    }
    if checks:
        report["checks"] = run_checks() + _local_model_checks(report["models"])
        report["healthy"] = all(item["ok"] for item in report["checks"])
    return report


def shipped_data_licences() -> dict[str, str]:
    """Each model shipped in the package (anoncli/pretrained/<name>/, the attackers included): the data it was
    trained on and that data's licence, as its card.json states them. The weights carry these terms (see NOTICE)."""
    from anoncli import modelstore

    licences = {}
    for folder in sorted(p for p in modelstore.shipped_dir("_").parent.glob("*") if p.is_dir()):
        try:
            data = json.loads((folder / modelstore.SHIPPED_CARD).read_text()).get("data")
        except (OSError, ValueError):
            continue
        data = data if isinstance(data, dict) else {}
        licence = data.get("licence")
        if isinstance(licence, dict):  # one licence per corpus
            licence = "; ".join(f"{corpus}: {text}" for corpus, text in licence.items())
        elif not isinstance(licence, str):  # corpus -> "name (source), licence"
            licence = "; ".join(text for text in data.values() if isinstance(text, str))
        licences[folder.name] = licence or "not stated in its card.json"
    return licences


def _local_model_checks(models: list[dict]) -> list[dict[str, Any]]:
    """One check per model of the local store: it loads (safely), since `--method M` would use it first."""
    from anoncli import modelstore
    from anoncli.errors import AnoncliError

    checks = []
    for model in models:
        if model["source"] != "local":
            continue
        started = time.perf_counter()
        try:
            modelstore.check_kind(model["path"], modelstore.load_checkpoint(model["path"]), model["method"])
            ok, detail = True, f"loads ({model['sha256'][:12]})"
        except AnoncliError as err:
            ok, detail = False, str(err)
        checks.append(
            {
                "name": f"model:{model['method']}",
                "ok": ok,
                "seconds": round(time.perf_counter() - started, 3),
                "needed_for": f"--method {model['method']} (the local model comes before the shipped one)",
                "detail": detail,
            }
        )
    return checks


def _table(report: dict[str, Any]) -> None:
    device = report["device"]
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in device["gpus"]) or "none"
    rows = [
        ["anoncli", report["anoncli"]],
        ["python", f"{report['python']} ({report['executable']})"],
        ["os", report["os"]],
        ["cpu", f"{report['cpu']} x {report['cpu_cores']}"],
        ["cuda", f"{device['cuda_available']} (build {device['cuda_version']}); GPUs: {gpus}"],
    ]
    rows += [[name, version or "not installed"] for name, version in report["packages"].items()]
    rows.append(["model store", report["model_store"]])
    print_rows("environment", ["item", "value"], rows)
    models = report["models"]
    print_rows(
        "models",
        ["method", "source", "sha256", "path"],
        [[m["method"], m["source"], m["sha256"][:12], m["path"]] for m in models] or [["(none)", "", "", ""]],
    )
    print_rows(
        "data licences of the shipped models (their weights carry these terms; see NOTICE)",
        ["model", "training data: licence"],
        [[name, text] for name, text in report["data_licences"].items()],
    )
    if "checks" in report:
        print_rows(
            "health checks",
            ["backend", "ok", "seconds", "needed for", "detail"],
            [
                [c["name"], "ok" if c["ok"] else "BROKEN", c["seconds"], c["needed_for"], c["detail"]]
                for c in report["checks"]
            ],
        )


def env(
    fmt: FormatOption = "table",
    quiet: QuietOption = False,
    no_checks: bool = typer.Option(
        False, "--no-checks", help="Only report versions, device and models; run no health check."
    ),
) -> None:
    """Show versions, the device, the model store, and check that every backend works.

    Exit 0 when healthy; 5 with one line per broken backend on stderr otherwise.

    Example: anoncli env --format json | jq '.checks[] | select(.ok | not)'
    """
    check_format(fmt)
    report = collect(checks=not no_checks)
    emit(report, fmt, _table, quiet)
    broken = [c for c in report.get("checks", []) if not c["ok"]]
    for check in broken:
        typer.echo(
            f"anoncli: error: backend {check['name']} is broken ({check['needed_for']}): {check['detail']}", err=True
        )
    if broken:
        raise typer.Exit(EXIT_UNHEALTHY)


def register(app: typer.Typer) -> None:
    """Add the `env` command to `app`."""
    app.command(name="env")(env)
