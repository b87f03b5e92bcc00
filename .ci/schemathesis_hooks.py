"""Schemathesis hooks for packd's CI run (loaded through SCHEMATHESIS_HOOKS).

The run authenticates with one admin key. Schemathesis learns key ids from
GET /v1/keys and, following the API's links, would rotate, expire or delete
that very key; every later request would then be a 401 and test nothing. So
cases aimed at that key's id are skipped: the key routes are still tested on
every other key (schemathesis creates its own with POST /v1/keys).

Every answer is also written to $PACKD_SCHEMATHESIS_LOG (operation and
status, one per line), so that .ci/schemathesis_report can say how many
operations were really exercised: a green run of 401s tests nothing.
"""

import os

import schemathesis

PROTECTED = os.environ.get("PACKD_PROTECTED_KEY_ID")
LOG = os.environ.get("PACKD_SCHEMATHESIS_LOG")


@schemathesis.hook
def filter_case(ctx, case):
    return not PROTECTED or (case.path_parameters or {}).get("id") != PROTECTED


@schemathesis.hook
def after_call(ctx, case, response):
    if LOG:
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(f"{case.operation.method.upper()} {case.operation.path} {response.status_code}\n")
