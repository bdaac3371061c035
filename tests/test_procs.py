"""procs.py: a run process's start-up heap frozen out of the garbage collector's full
collections. Each test runs in a fresh interpreter (freezing is once per process)."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    # the frozen heap is collected at exit: DuckDB's bindings report none of their objects leaked
    assert "leaked" not in done.stderr, done.stderr[-2000:]
    return done.stdout.strip()


def test_start_up_collects_nothing_then_freezes_its_heap_once_and_collects_again():
    out = _python("""
        import gc
        from dataset_platform import procs

        seen = []
        gc.callbacks.append(lambda phase, info: seen.append(info["generation"]) if phase == "start" else None)
        with procs.start_up():
            assert not gc.isenabled()
            heap = [[i] for i in range(200_000)]  # (far past the thresholds of every generation)
            assert seen == [], seen
        assert gc.isenabled() and gc.get_freeze_count() >= 200_000
        assert procs.freeze_start_up_heap() is False  # (once per part)
        frozen = gc.get_freeze_count()
        later = [[i] for i in range(1000)]  # (what a warm-up imports, say)
        assert procs.freeze_start_up_heap("warm-up") is True and gc.get_freeze_count() >= frozen + 1000
        assert procs.freeze_start_up_heap("warm-up") is False
        cycle = []
        cycle.append(cycle)  # garbage made later is still collected
        del cycle
        assert gc.collect() >= 1
        print("ok", len(heap) + len(later) - 1000)
    """)
    assert out == "ok 200000"


def test_a_process_whose_collector_was_off_keeps_it_off():
    out = _python("""
        import gc
        from dataset_platform import procs

        gc.disable()
        with procs.start_up():
            pass
        print(gc.isenabled(), gc.get_freeze_count() > 0)
    """)
    assert out == "False True"


def test_a_run_freezes_its_process_heap_at_its_start(tmp_path):
    """A run Dagster launched: the platform resource's set-up freezes the heap (``dataset-platform
    run`` has done it before the run starts)."""
    out = _python(f"""
        import gc
        import dagster as dg
        from dataset_platform.config import demo_config_path
        from dataset_platform.defs.resources import PlatformResource

        assert gc.get_freeze_count() == 0

        @dg.asset
        def probe(platform: PlatformResource):
            return gc.get_freeze_count()

        result = dg.materialize([probe], resources={{"platform": PlatformResource(
            config_path=str(demo_config_path()), workdir={str(tmp_path / "w")!r})}})
        print(result.output_for_node("probe") > 0)
    """)
    assert out.splitlines()[-1] == "True"


def test_the_stages_warm_up_freezes_what_it_imported():
    out = _python("""
        import gc
        from dataset_platform import procs
        from dataset_platform.config import demo_config_path, load_config
        from dataset_platform.runner import warm_up

        warm_up(load_config(demo_config_path())).join(timeout=300)
        print(sorted(procs._FROZEN), gc.get_freeze_count() > 0)
    """)
    assert out.splitlines()[-1] == "['warm-up'] True"
