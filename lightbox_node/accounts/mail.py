"""Sending account email (address verification) over SMTP, when the operator configures it.

Synchronous (smtplib): the account service calls it from a worker thread. No third party
is needed for anything else; without a mailer, addresses are kept unverified.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage


@dataclass(frozen=True, slots=True)
class SmtpMailer:
    """An SMTP relay: `host:port`, the From address, optional STARTTLS and login."""

    host: str
    port: int
    sender: str
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0

    def send(self, to: str, subject: str, text: str) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message.set_content(text)
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    def __repr__(self) -> str:  # never print the password
        return f"SmtpMailer({self.host}:{self.port}, from {self.sender})"
