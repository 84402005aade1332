"""Helpers shared by the benchmark files."""


def record(benchmark, flops=None, nbytes=None):
    """Put the work done per call in extra_info, and the achieved rate when timings exist."""
    stats = getattr(benchmark, "stats", None)
    mean = stats.stats.mean if stats is not None and getattr(stats, "stats", None) else None
    if flops is not None:
        benchmark.extra_info["flops"] = flops
        if mean:
            benchmark.extra_info["GFLOP/s"] = round(flops / mean / 1e9, 1)
    if nbytes is not None:
        benchmark.extra_info["bytes"] = nbytes
        if mean:
            benchmark.extra_info["GB/s"] = round(nbytes / mean / 1e9, 1)


def timed_sync(benchmark, fn, sync, flops=None, nbytes=None):
    """Time fn() followed by sync() (a device synchronize, so each round is one complete call),
    then record the work per call and the achieved rate; returns fn's last result."""

    def run():
        out = fn()
        sync()
        return out

    out = benchmark(run)
    record(benchmark, flops=flops, nbytes=nbytes)
    return out
