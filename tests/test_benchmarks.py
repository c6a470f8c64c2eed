"""The device benchmark (tiny shapes on the CPU) and the extraction benchmark (--toy) run and
print the figures their READMEs quote."""

from __future__ import annotations

import re

import pytest

from experiments import bench_extract, bench_gpu

NUM = r"([\d.]+(?:e[+-]\d+)?)"
ROW = re.compile(r"^\| (\S+) \| [\d.]+M \| (fp32|bf16) \| (MHA|eager|sdpa) \| 2 \| "
                 + r" \| ".join([NUM] * 6) + r" \| " + r" \| ".join([NUM + "%"] * 3) + r" \|$")


def test_bench_gpu_tiny_on_cpu_writes_the_table(tmp_path, capsys):
    out = tmp_path / "gpu.md"
    bench_gpu.main(["--tiny", "--device", "cpu", "--seconds", "0.01", "--models", "clip,qwen2vl",
                    "--settings", "fp32,bf16+sdpa", "--peak-tflops", "1e-6", "--out", str(out)])
    printed = capsys.readouterr().out
    assert printed.strip().splitlines()[-1] == f"table={out}"
    rows = [ROW.match(line) for line in out.read_text().splitlines() if line.startswith("| clip")
            or line.startswith("| qwen")]
    assert all(rows) and len(rows) == 3  # clip: fp32 (no sdpa row); qwen2vl: fp32, bf16+sdpa
    for m in rows:
        rates = [float(m.group(i)) for i in (4, 5, 6)]
        gflops = [float(m.group(i)) for i in (7, 8, 9)]
        mfu = [float(m.group(i)) for i in (10, 11, 12)]
        assert min(rates) > 0 and min(gflops) > 0
        # MFU = items/s x FLOPs per item / peak (1e-6 TFLOP/s here). The table prints rates to
        # 0.1/s (a tiny model on a loaded CPU: a few items/s), GFLOPs to 4 digits and MFU to
        # 0.1 %: the bound below is exactly that rounding, not a percentage guess
        for rate, g, u in zip(rates, gflops, mfu, strict=True):
            bound = 100 * 0.05 * g * 1e3 + 100 * rate * g * 1e3 * 5e-4 + 0.05
            assert u == pytest.approx(100 * rate * g * 1e9 / 1e6, rel=0, abs=bound)
    dual = next(m for m in rows if m.group(1).startswith("clip"))
    img, txt, joint = (float(dual.group(i)) for i in (4, 5, 6))
    # both encoders per item; the table prints joint items/s to 0.1 (slow machines: ~2/s)
    assert joint == pytest.approx(1 / (1 / img + 1 / txt), rel=0.01, abs=0.051)


def test_flop_counter_counts_a_matmul():
    import torch

    lin = torch.nn.Linear(8, 4, bias=False)
    assert bench_gpu.flops_per_item(lin, torch.zeros(1, 8)) == 2 * 8 * 4


def test_bench_extract_toy_ends_with_the_ratio_line(capsys):
    bench_extract.main(["--toy", "--n", "8", "--batch-size", "4", "--workers", "1",
                        "--device", "cpu"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    m = re.fullmatch(r"model_only_items_per_s=([\d.]+) end_to_end_items_per_s=([\d.]+) "
                     r"ratio=([\d.]+)", last)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0
    # the ratio is printed to 3 decimals: a small ratio (8 items, worker start-up) rounds by
    # up to 5e-4, more than 1% of it
    assert float(m.group(3)) == pytest.approx(float(m.group(2)) / float(m.group(1)), rel=0.01,
                                              abs=6e-4)
