"""Command line: ``python -m fastdl info | bench [--quick] [--json F] [--plot F.png] | demo [name]``."""

from __future__ import annotations

import argparse
import sys


def _info() -> None:
    import fastdl

    facts = fastdl.info()
    ext = fastdl._backend.cuda_extension()
    gpu = "no"
    if ext is not None:
        try:
            gpu = f"{ext.device_count()} device(s)"
        except Exception as e:  # no driver on this machine
            gpu = f"no ({e})"
    print(f"fastdl {facts['version']}")
    print(f"  CPU ISA        {facts['cpu_isa']} (supported: {facts['cpu_isa_supported']}; "
          f"cap with FASTDL_CPU_ISA=generic|avx2|avx512)")
    print(f"  threads        {facts['num_threads']}")
    print(f"  CUDA extension {'built' if facts['cuda_built'] else 'not built'}")
    print(f"  GPU visible    {gpu}")
    print(f"  CUDA usable    {facts['cuda_available']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastdl", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="build, CPU ISA, threads, CUDA")
    bench = sub.add_parser("bench", help="fastdl against NumPy and PyTorch, one process")
    bench.add_argument("--quick", action="store_true", help="fewer shapes, shorter timing")
    bench.add_argument("--json", metavar="F", help="also write the results as JSON")
    bench.add_argument("--plot", metavar="F.png", help="also plot GFLOP/s (needs matplotlib)")
    from .demos import DEFAULT, DEMOS

    demo = sub.add_parser("demo", help="train a real model on real data (default: mlp_digits)",
                          description="\n".join(f"{k}: {v}" for k, v in DEMOS.items()),
                          formatter_class=argparse.RawDescriptionHelpFormatter)  # a line each
    demo.add_argument("name", nargs="?", default=DEFAULT, choices=sorted(DEMOS))
    demo.add_argument("--epochs", type=int, default=None, help="training epochs (demo's default)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument("--threads", type=int, default=None,
                      help="CPU threads for fastdl (and PyTorch beside it); default: all cores")
    demo.add_argument("--steps", type=int, default=None,
                      help="char_lstm, transformer: training steps (instead of --epochs)")
    demo.add_argument("--out", metavar="PATH", default=None,
                      help="segmentation, char_lstm: directory or .png file for the picture "
                           "(default: .)")
    demo.add_argument("--list", action="store_true", help="name the demos and stop")
    args = parser.parse_args(argv)
    if args.cmd == "info":
        _info()
    elif args.cmd == "bench":
        from . import _bench

        _bench.main(args.quick, args.json, args.plot)
    elif args.cmd == "demo":
        return _demo(args)
    return 0


def _demo(args) -> int:
    import importlib
    import inspect

    if args.list:
        from .demos import DEMOS

        for name, what in DEMOS.items():
            print(f"{name:14s} {what}")
        return 0
    if args.epochs is not None and args.epochs < 1:
        print("demo: --epochs must be >= 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        import fastdl

        fastdl.set_num_threads(args.threads)
    module = importlib.import_module(f"fastdl.demos.{args.name}")
    extra = {}
    for flag in ("out", "steps"):
        if getattr(args, flag) is None:
            continue
        if flag not in inspect.signature(module.run).parameters:
            print(f"demo {args.name}: --{flag} is not used by this demo", file=sys.stderr)
            return 2
        if flag == "steps" and args.steps < 1:
            print("demo: --steps must be >= 1", file=sys.stderr)
            return 2
        extra[flag] = getattr(args, flag)
    try:
        module.run(epochs=args.epochs, seed=args.seed, compare_torch=not args.no_torch,
                   progress=not args.no_progress, **extra)
    except ImportError as e:
        print(f"demo {args.name}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
