"""Handing a notification to the mail system: an SMTP relay (smtplib) or qmail-inject.

A transport sends one message to one recipient and says how it went: sent, a
temporary failure (retry later), or a permanent one (never retry). Just before
the point of no return — the SMTP ``DATA`` command, or starting qmail-inject —
it calls ``commit_point`` so the outbox can record "in doubt": a crash before
that is safe to retry, a crash after it might have delivered, and the outbox
then never sends again by itself (see outbox.py).
"""

from __future__ import annotations

import os
import smtplib
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from compliance.notify.settings import NotifySettings


class DeliveryError(Exception):
    """A send that did not happen; ``permanent`` ones are never retried."""

    def __init__(self, message: str, *, permanent: bool = False, relay_down: bool = False,
                 in_doubt: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.relay_down = relay_down  # nothing else will get through now: end the pass
        self.in_doubt = in_doubt  # failed after the commit point: it may have been delivered


class Transport(Protocol):
    def send(self, envelope_sender: str, recipient: str, message: bytes,
             commit_point: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


def _reply_text(code: int, text: bytes | str) -> str:
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(body.split())}"[:500]


@dataclass
class SmtpTransport:
    """One SMTP connection reused across a delivery pass (RSET between messages)."""

    settings: NotifySettings  # smtp_host, smtp_port, smtp_timeout, smtp_starttls, smtp_user, smtp_password
    helo: str | None = None
    _smtp: smtplib.SMTP | None = field(default=None, init=False, repr=False)

    @property
    def relay(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.smtp_port}"

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            try:
                self._smtp.rset()
                return self._smtp
            except (smtplib.SMTPException, OSError):
                self.close()
        try:
            n = self.settings
            smtp = smtplib.SMTP(n.smtp_host, n.smtp_port, local_hostname=self.helo, timeout=n.smtp_timeout)
            smtp.ehlo_or_helo_if_needed()
            if n.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if n.smtp_user:
                smtp.login(n.smtp_user, n.smtp_password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"relay {self.relay} refused the login: "
                                f"{_reply_text(exc.smtp_code, exc.smtp_error)}", relay_down=True) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"relay {self.relay} unavailable: {exc}", relay_down=True) from exc
        self._smtp = smtp
        return smtp

    def send(self, envelope_sender: str, recipient: str, message: bytes,
             commit_point: Callable[[], None]) -> None:
        smtp = self._connect()
        committed = False
        try:
            code, text = smtp.mail(envelope_sender)
            if code != 250:
                smtp.rset()
                raise DeliveryError(f"MAIL FROM refused: {_reply_text(code, text)}", permanent=code >= 500)
            code, text = smtp.rcpt(recipient)
            if code not in (250, 251):
                smtp.rset()
                raise DeliveryError(f"RCPT TO refused: {_reply_text(code, text)}", permanent=code >= 500)
            commit_point()
            committed = True
            code, text = smtp.data(message)
            if code != 250:
                # The relay said no to this message: it certainly did not take it.
                raise DeliveryError(f"DATA refused: {_reply_text(code, text)}", permanent=code >= 500)
        except DeliveryError:
            raise
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise DeliveryError(f"relay error: {_reply_text(exc.smtp_code, exc.smtp_error)}",
                                permanent=exc.smtp_code >= 500) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            # Lost after DATA began: the relay may have taken it before we heard its 250.
            raise DeliveryError(f"relay {self.relay} connection lost: {exc}",
                                relay_down=True, in_doubt=committed) from exc

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (TimeoutError, smtplib.SMTPException, OSError):
                try:
                    self._smtp.close()
                except OSError:
                    pass
            self._smtp = None


@dataclass
class QmailInjectTransport:
    """``qmail-inject -a -fSENDER RECIPIENT`` with the message on stdin.

    ``-a``: only the argument is a recipient, never the To: header. The null
    sender cannot be given with ``-f``, so it travels as a ``Return-Path: <>``
    header, which qmail-inject turns into the envelope sender and deletes
    (QMAILINJECT is cleared so its ``s`` flag cannot disable that).
    Exit 0 is queued, 100 permanent, anything else temporary.
    """

    path: Path  # notify.qmail_inject
    timeout: float = 60.0

    def send(self, envelope_sender: str, recipient: str, message: bytes,
             commit_point: Callable[[], None]) -> None:
        argv = [str(self.path), "-a"]
        if envelope_sender:
            argv.append(f"-f{envelope_sender}")
        else:
            message = b"Return-Path: <>\r\n" + message
        argv.append(recipient)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QMAIL")}
        commit_point()
        try:
            done = subprocess.run(argv, input=message.replace(b"\r\n", b"\n"), capture_output=True,
                                  timeout=self.timeout, env=env, check=False)
        except FileNotFoundError as exc:
            raise DeliveryError(f"{self.path} not found", relay_down=True) from exc
        except subprocess.TimeoutExpired as exc:
            raise DeliveryError(f"qmail-inject timed out after {self.timeout:g} s", in_doubt=True) from exc
        except OSError as exc:
            raise DeliveryError(f"qmail-inject failed: {exc}") from exc
        if done.returncode != 0:
            why = " ".join(done.stderr.decode("utf-8", "replace").split())[:300]
            raise DeliveryError(f"qmail-inject exited {done.returncode}: {why}",
                                permanent=done.returncode == 100)

    def close(self) -> None:
        return None
