def test_deployments_are_typed_and_documented():
    from prefect.utilities.callables import parameter_schema

    from flows.deploy import deployments
    from flows.sleep_cycle import sleep_cycle

    on_demand, nightly = deployments()
    assert (on_demand.name, nightly.name) == ("on-demand", "nightly")
    assert nightly.paused is True and nightly.schedules, "nightly is scheduled but starts paused"
    form = parameter_schema(sleep_cycle.fn).model_dump()["definitions"]["NightParameters"]["properties"]
    assert {"params_file", "world_day", "tracking_uri", "model_name"} <= set(form)
    assert all(field.get("description") for field in form.values()), "the UI form documents every field"


def test_each_deployment_runs_one_night_at_a_time():
    from flows.deploy import deployments

    assert [d.concurrency_limit for d in deployments()] == [1, 1]
