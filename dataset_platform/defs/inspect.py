"""A document's trace in the Dagster UI: the ``trace_document`` job (Launchpad: give ``what``,
an id, a URL or a text snippet). Its one op runs ``dataset_platform.inspect.trace`` on the work
folder of the code location (``$DATASET_PLATFORM_WORKDIR``, as ``dataset-platform ui`` sets it) and
shows the journey in the run's log and as Markdown and JSON metadata of its output. It reads
files only: no asset is materialised and no lock is taken, so it runs beside a pipeline run."""

import dagster as dg
from pydantic import Field


class TraceConfig(dg.Config):
    what: str = Field(description="a document id (16 hex digits), a URL as crawled, or a snippet of its text")


@dg.op(description="Trace one document through the work folder's layers, checks and releases (read-only).")
def trace_document(context: dg.OpExecutionContext, config: TraceConfig) -> dg.Output[None]:
    from dataset_platform.inspect import trace
    from dataset_platform.inspect.errors import InspectError

    try:
        res = trace.trace(None, config.what)
    except InspectError as e:
        raise dg.Failure(description=str(e)) from None
    text = trace.render_text(res)
    context.log.info(text)
    verdicts = [f"- `{j['id']}`: {j['verdict']}" for j in res["documents"]]
    return dg.Output(None, metadata={
        "verdict": dg.MetadataValue.md("\n".join(verdicts) or f"no document found for `{config.what}`"),
        "trace": dg.MetadataValue.md(f"```text\n{text}\n```"),
        "journey": dg.MetadataValue.json(_jsonable(res)),
        "documents": len(res["documents"]),
    })


@dg.job(description="Where a document came from and why it is (not) in the release: give `what` (an id, a URL or a "
                    "text snippet) in the Launchpad. Same as `dataset-platform trace`.",
        tags={"dataset_platform/kind": "inspect"})
def trace_document_job() -> None:
    trace_document()


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))
