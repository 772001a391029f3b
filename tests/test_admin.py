"""The admin command, run as a user would (its main with argv), against the emulator."""

from __future__ import annotations

import json

from tools import admin


def run(capsys, *argv: str):
    capsys.readouterr()  # drop request log lines printed before
    code = admin.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_account_and_key_lifecycle(api, capsys):
    code, out, _ = run(capsys, "create-account", "--name", "Acme", "--entitled")
    assert code == 0
    account = json.loads(out)
    assert account["entitled"] is True and account["plan"] == "dev"

    code, out, err = run(capsys, "create-key", account["id"], "--roles", "OWNER", "--name", "laptop")
    assert code == 0 and "not shown again" in err
    key = json.loads(out)
    assert key["api_key"].startswith("qo_dev_") and key["roles"] == ["OWNER"]
    assert api.post("/v1/workflows", {"title": "t"}, key["api_key"]).status == 201

    code, out, _ = run(capsys, "create-key", account["id"], "--roles", "developer,tester")
    assert code == 0 and json.loads(out)["roles"] == ["DEVELOPER", "TESTER"]
    code, out, _ = run(capsys, "list-keys", account["id"])
    listed = json.loads(out)
    assert [k["key_id"] for k in listed][:1] == [key["key_id"]] and len(listed) == 2
    assert all("api_key" not in k for k in listed)

    code, out, _ = run(capsys, "revoke-key", key["key_id"])
    assert code == 0 and json.loads(out)["revoked"] is True
    assert api.get("/v1/workflows", key["api_key"]).status == 401

    code, out, _ = run(capsys, "set-account", account["id"], "--not-entitled")
    assert code == 0 and json.loads(out)["entitled"] is False


def test_refusals(api, capsys):
    assert run(capsys, "create-key", "acct_nope", "--roles", "OWNER")[0] == 1
    code, out, _ = run(capsys, "create-account", "--name", "A")
    assert code == 0
    assert run(capsys, "create-key", json.loads(out)["id"], "--roles", "CUSTOMER")[0] == 1  # not a key role
    assert run(capsys, "revoke-key", "key_nope")[0] == 1


def test_an_operator_adds_a_person_to_an_account(api, capsys):
    code, out, _ = run(capsys, "create-account", "--name", "Acme")
    account = json.loads(out)["id"]
    code, out, _ = run(capsys, "add-member", account, "--uid", "u-1", "--email", "Ann@Example.com", "--roles", "owner")
    assert code == 0
    member = json.loads(out)
    assert (member["uid"], member["email"], member["roles"], member["invited_by"]) == (
        "u-1", "ann@example.com", ["OWNER"], "system:admin")
    assert run(capsys, "add-member", account, "--uid", "u-1", "--email", "a@b.c", "--roles", "VIEWER")[0] == 1
    assert run(capsys, "add-member", account, "--uid", "u-2", "--email", "a@b.c", "--roles", "VIEWER,OWNER")[0] == 1
    assert run(capsys, "add-member", "acct_nope", "--uid", "u-3", "--email", "a@b.c", "--roles", "VIEWER")[0] == 1
