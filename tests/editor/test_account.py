"""Signing in from the editor: register (with the proof of work) and log in where the node
keeps accounts, the operator token where it does not, and clear words for expired sessions,
rate limits and exhausted trust."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.node_process import http_json


def accounts_offered(node) -> bool:
    status, _ = http_json(node.editor + "api/v1/accounts/challenge")
    return status == 200


def test_register_log_out_and_log_in_again(signed_out_editor, node) -> None:
    if not accounts_offered(node):
        pytest.skip("this node has no /api/v1/accounts endpoints")
    editor = signed_out_editor.load()
    assert editor.page.locator("#account-button").inner_text() == "Sign in"
    editor.page.click("#account-button")
    editor.page.click("#account-tabs [data-pane=register]")
    name = f"tester-{secrets.token_hex(3)}"
    editor.page.fill("#register-user", name)
    editor.page.fill("#register-password", "correct horse battery")
    editor.page.click("#register-submit")
    editor.wait(
        "() => document.querySelector('#account-message').textContent.includes('Solving')",
        timeout_s=20,
    )
    editor.shot("solving-proof-of-work")
    editor.wait(
        f"() => document.querySelector('#account-button').textContent.startsWith('{name}')",
        timeout_s=120,
    )
    assert editor.js("() => lightbox.api.session.kind") == "account"
    editor.shot("registered")
    editor.page.click("#account-button")
    editor.page.click("#logout")
    editor.wait("() => document.querySelector('#account-button').textContent === 'Sign in'")
    editor.page.click("#account-tabs [data-pane=login]")
    editor.page.fill("#login-user", name)
    editor.page.fill("#login-password", "wrong password!")
    editor.page.click("#login-submit")
    editor.allowed_errors.append("status of 401")
    editor.wait("() => document.querySelector('#account-message').textContent.includes('Wrong')")
    assert "Wrong user name or password" in editor.page.locator("#account-message").inner_text()
    editor.page.fill("#login-password", "correct horse battery")
    editor.page.click("#login-submit")
    editor.wait(f"() => document.querySelector('#account-button').textContent.startsWith('{name}')")
    assert editor.js("() => JSON.parse(localStorage.getItem('lightbox.session')).username") == name


def test_without_accounts_the_operator_token_is_offered(signed_out_editor, operator_token) -> None:
    editor = signed_out_editor
    editor.page.route(
        "**/api/v1/accounts/challenge",
        lambda route: route.fulfill(
            status=404,
            body=json.dumps({"error": "not_found", "detail": "no API endpoint"}),
            content_type="application/json",
        ),
    )
    editor.allowed_errors.append("accounts/challenge")
    editor.load()
    editor.page.click("#account-button")
    editor.wait("() => !document.querySelector('form[data-pane=operator]').hidden")
    assert editor.page.locator("#account-tabs [data-pane=login]").is_hidden()
    assert "no accounts" in editor.page.locator("#account-message").inner_text()
    editor.shot("operator-token")
    editor.page.fill("#operator-token", operator_token)
    editor.page.click("#operator-submit")
    editor.wait(
        "() => document.querySelector('#account-button').textContent.startsWith('operator')"
    )
    editor.choose_task("echo")
    editor.page.fill(".field[data-input=text] input", "as the operator")
    editor.page.click("#task-submit")
    editor.wait(
        "() => document.querySelector('#staging-items').textContent.includes('as the operator')"
    )


def test_a_session_the_node_refuses_asks_to_log_in_again(signed_out_editor) -> None:
    editor = signed_out_editor
    session = json.dumps(
        {"kind": "account", "token": "lbt1.not-a-real-token", "username": "ghost", "expiresAt": 4e9}
    )
    editor.page.context.add_init_script(
        f"localStorage.setItem('lightbox.session', {json.dumps(session)});"
    )
    editor.allowed_errors.append("status of 401")
    editor.load()  # the editor checks the session at once (reading the account's trust)
    editor.wait("() => document.querySelector('#account-dialog').open")
    message = editor.page.locator("#account-message").inner_text()
    assert "Log in again" in message
    assert editor.js("() => lightbox.api.session") is None
    editor.shot("expired")


@pytest.mark.parametrize(
    ("code", "words"),
    [("rate_limited", "Too many requests"), ("trust_exhausted", "out of trust")],
)
def test_rate_limits_and_exhausted_trust_are_explained(editor, code, words) -> None:
    body = {"error": code, "detail": "refused", "retry_after_s": 42}
    editor.page.route(
        "**/api/v1/jobs",
        lambda route: route.fulfill(
            status=429,
            body=json.dumps(body),
            headers={"Retry-After": "42"},
            content_type="application/json",
        ),
    )
    editor.allowed_errors.append("status of 429")
    editor.choose_task("echo")
    editor.page.fill(".field[data-input=text] input", "hello")
    editor.page.click("#task-submit")
    toast = editor.page.locator(".toast").last
    toast.wait_for()
    assert words in toast.inner_text() and "42 s" in toast.inner_text()
    editor.shot(code)
