"""Jobs per hour: a shell loop of ``dicetalk generate`` against ``dicetalk batch`` with 1 and 2 processes.

    python benchmarks/batch.py                 # 6 jobs of examples/portrait.png + 2 s of examples/speech.wav
    python benchmarks/batch.py --jobs 12 --seconds 5.5

The embedded default model, --no-crop, its own recipe, on this machine's CPU. Two processes run
under ``accelerate launch`` (gloo), each with the machine's cores split between them.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DICETALK = [sys.executable, "-m", "dicetalk"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0, help="seconds of speech per job")
    a = ap.parse_args()
    from dicetalk.utils.media import read_audio, write_audio

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        speech = read_audio(ROOT / "examples" / "speech.wav", 16000)[: int(a.seconds * 16000)]
        write_audio(tmp / "speech.wav", speech, 16000)
        (tmp / "face.png").write_bytes((ROOT / "examples" / "portrait.png").read_bytes())
        jobs = [{"image": "face.png", "audio": "speech.wav", "seed": s, "crop": False, "output": f"v{s}.mp4"} for s in range(a.jobs)]
        (tmp / "jobs.jsonl").write_text("".join(json.dumps(j) + "\n" for j in jobs))
        cores = os.cpu_count() or 1
        results = {}

        start = time.perf_counter()
        for j in jobs:
            subprocess.run([*DICETALK, "generate", str(tmp / "face.png"), str(tmp / "speech.wav"), "--no-crop", "--seed", str(j["seed"]),
                            "-o", str(tmp / "loop" / j["output"])], check=True, capture_output=True)  # fmt: skip
        results["shell loop of generate"] = time.perf_counter() - start

        start = time.perf_counter()
        subprocess.run([*DICETALK, "batch", str(tmp / "jobs.jsonl"), "--out", str(tmp / "one"), "--no-progress"], check=True, capture_output=True)
        results["batch, 1 process"] = time.perf_counter() - start

        env = {**os.environ, "ACCELERATE_USE_CPU": "1", "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": str(max(1, cores // 2))}
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_port()),
                        "-m", "dicetalk", "batch", str(tmp / "jobs.jsonl"), "--out", str(tmp / "two"), "--no-progress"],
                       check=True, capture_output=True, env=env)  # fmt: skip
        results["batch, 2 processes (accelerate)"] = time.perf_counter() - start

    print(f"{a.jobs} jobs of {a.seconds:g} s of speech, default model, {cores} CPU cores\n")
    print("| how | seconds | jobs per hour |\n| --- | ---: | ---: |")
    for how, seconds in results.items():
        print(f"| {how} | {seconds:.1f} | {a.jobs * 3600 / seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
