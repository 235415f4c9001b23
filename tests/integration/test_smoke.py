"""End to end: a point reaches the broker in a batch, an action reaches the app and its
status reaches the broker."""
from conftest import App, TOPIC, publish, wait_for


def test_points_and_actions_flow(make_edgelink, broker, sub):
    el = make_edgelink()
    app = App(el.app_port())
    for seq in range(1, 11):
        app.point("imu", seq, ax=seq / 10)
    batches = wait_for(lambda: sub.json_on("/events/imu/jsonarray"), what="a batch")
    assert batches[0] == [{"sequence": s, "timestamp": 1700000000000 + s, "ax": s / 10} for s in range(1, 11)]

    publish(broker.port, TOPIC + "/actions", '{"action_id": "42", "name": "reboot", "payload": "{}"}')
    action = app.read_line()
    assert action == {"action_id": "42", "name": "reboot", "payload": "{}"}
    app.status("42", "Completed", 100)
    states = wait_for(lambda: [s["state"] for s in sub.statuses() if s["action_id"] == "42"] == ["Received", "Completed"]
                      and True, what="Received then Completed")
    assert states
    assert el.stop() == 0
