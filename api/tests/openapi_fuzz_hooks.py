"""Schemathesis hooks for api/tests/openapi_fuzz.rs (loaded with SCHEMATHESIS_HOOKS).

Schemathesis reuses the Idempotency-Key values it generates (`0` hundreds of times a run), and
Hypothesis repeats earlier requests. So a run can create a resource with key K, delete it, send
the same creating request with K again and get the stored 201 back, as docs/api.md promises: a
key names one request, and its answer is replayed even after what it created was deleted. A
GET on the replayed id is then a 404, which the `ensure_resource_availability` check (ST302)
reports as "created resource not found".

These hooks excuse exactly that case and no other: they note the ids in every replayed
answer (`Idempotency-Replayed: true`) and drop an ST302 only when the request that got the 404
names one of them. A resource that a fresh (not replayed) create cannot be found by still fails
the run.
"""

import schemathesis

# Every string in the body of an answer that was a replay: the ids a link can take from it.
REPLAYED_IDS = set()


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


@schemathesis.hook
def after_call(ctx, case, response):
    if "true" not in response.headers.get("idempotency-replayed", []):
        return
    try:
        body = response.json()
    except ValueError:
        return
    REPLAYED_IDS.update(_strings(body))


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    if failure.code != "ST302":
        return True
    named = set(_strings(case.path_parameters or {})) | set(_strings(case.query or {}))
    return not (named & REPLAYED_IDS)
