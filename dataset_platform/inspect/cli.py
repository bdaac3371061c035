"""The ``sql``, ``status`` and ``trace`` subcommands of ``dataset-platform`` (added to its parser by
:func:`add_inspect_commands`, run by :func:`run_inspect_command`)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from dataset_platform.inspect.errors import InspectError
from dataset_platform.workdir import DEFAULT_WORKDIR

COMMANDS = ("sql", "status", "trace")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_WORKDIR_HELP = f"the work folder a run wrote (default ./{DEFAULT_WORKDIR}, or $DATASET_PLATFORM_WORKDIR)"


def add_inspect_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``sql``, ``status`` and ``trace`` to the ``dataset-platform`` subcommands."""
    q = sub.add_parser("sql", help="run a read-only SQL query on the work folder's warehouse and print the rows",
                       description="Run a query on <workdir>/warehouse.duckdb (read-only: a running pipeline is "
                                   "neither blocked nor changed). Tables: raw_pages, crawl_log, extracted_documents, "
                                   "cleaned_documents, scored_documents, deduplicated_documents, duplicate_clusters, labelled_documents, "
                                   "human_annotations, decontaminated_documents, rejected_documents, dataset_release.")
    q.add_argument("query", help="the SQL, e.g. \"SELECT stage, rule, count(*) FROM rejected_documents GROUP BY ALL\"")
    q.add_argument("--workdir", default=None, help=_WORKDIR_HELP)
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", dest="fmt", action="store_const", const="csv",
                     help="print CSV (a header line, then every row) instead of a table")
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json",
                     help="print JSON Lines (one object per row) instead of a table")
    q.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="print at most N rows (default: 40 in a table, all with --csv/--json)")

    s = sub.add_parser("status", help="last runs, rows per layer, latest check results and the current release")
    s.add_argument("--workdir", default=None, help=_WORKDIR_HELP)
    s.add_argument("--json", action="store_true", help="print the status as one JSON object")

    t = sub.add_parser("trace", help="a document's journey: crawl outcome, layers reached, why it was dropped, "
                                     "labels, split and the releases holding it",
                       description="Trace a document by its id (16 hex digits), its URL, or a snippet of its text "
                                   "(a full scan of the texts: slower on a large corpus).")
    t.add_argument("what", metavar="ID|URL|TEXT", help="a document id, a URL as crawled, or a text snippet")
    t.add_argument("--workdir", default=None, help=_WORKDIR_HELP)
    t.add_argument("--json", action="store_true", help="print the journey as one JSON object")


def run_inspect_command(args: argparse.Namespace, out=None) -> int:
    """Run one of :data:`COMMANDS` (output to ``out``, default stdout); a user mistake prints what to
    do and returns 2."""
    out = out or sys.stdout
    try:
        if args.command == "sql":
            from dataset_platform.inspect.sql import run_sql

            run_sql(args.workdir, args.query, fmt=args.fmt or "table", max_rows=args.max_rows, out=out)
            return EXIT_OK
        if args.command == "status":
            from dataset_platform.inspect import status

            data = status.collect(args.workdir)
            print(json.dumps(data, indent=1, default=str, ensure_ascii=False) if args.json
                  else status.render_text(data), file=out)
            return EXIT_OK
        if args.command == "trace":
            from dataset_platform.inspect import trace

            res = trace.trace(args.workdir, args.what)
            print(json.dumps(res, indent=1, default=str, ensure_ascii=False) if args.json
                  else trace.render_text(res), file=out)
            return EXIT_OK if res["documents"] else EXIT_FAILED
        raise ValueError(f"not an inspection command: {args.command}")
    except InspectError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # (the reader stopped early, e.g. `| head`: not an error)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
