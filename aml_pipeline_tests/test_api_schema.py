"""The API tested like a public one: property-based requests generated from its OpenAPI
schema (schemathesis, a bounded number per route) find no server error and no response
that breaks the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

from aml_pipeline.api.app import create_app
from aml_pipeline_tests.test_api import NETWORK, NETWORKS
from aml_pipeline_tests.test_api_ranges import write_history

pytestmark = pytest.mark.integration  # fuzzes every route of the app

EXAMPLES_PER_ROUTE = 30


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    # schemathesis calls the app as "testserver"; the Host check has its own test
    app = create_app(
        write_history(tmp_path_factory.mktemp("schema")), NETWORKS, NETWORK, ["testserver"]
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_every_route_answers_within_its_schema(api_schema: schemathesis.BaseSchema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 15

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_ROUTE,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            # a request valid for the schema may still be refused on its meaning (2025-02-30,
            # a range ending before it starts or longer than 366 days): a 422 by design
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
