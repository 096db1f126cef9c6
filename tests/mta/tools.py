"""Independent judges of a built message: SpamAssassin's score, and DKIM verified by OpenDKIM
and by Perl's Mail::DKIM (neither shares code with dkimpy or with mailer).

Nothing here touches the network: SpamAssassin runs local tests only (``-L``), without
Bayes or user preferences; both DKIM verifiers take the public key from a file instead of
DNS (OpenDKIM's ``TestPublicKeys``, a mock resolver for Mail::DKIM).

OpenDKIM's ``opendkim-testmsg`` can only look keys up in DNS, so the OpenDKIM verdict comes
from the filter's own test mode, ``opendkim -t``: the same libopendkim.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SPAMASSASSIN_CONFIG = ("use_bayes 0", "bayes_auto_learn 0")

# Mail::DKIM with Net::DNS::Resolver::Mock answering from a zone file: prints one line per
# signature, "RESULT<TAB>DETAIL", or "none" when the message has no signature.
MAIL_DKIM_VERIFIER = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS::Resolver::Mock;
my $resolver = Net::DNS::Resolver::Mock->new();
$resolver->zonefile_read($ARGV[0]);
Mail::DKIM::DNS::resolver($resolver);
my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) { s/\r?\n\z//; $dkim->PRINT("$_\r\n"); }
$dkim->CLOSE;
my @signatures = $dkim->signatures;
print "none\tno signature\n" unless @signatures;
print $_->result, "\t", $_->result_detail, "\n" for @signatures;
"""


@dataclass(frozen=True)
class SpamReport:
    score: float
    required: float
    is_spam: bool
    rules: dict[str, float]  # rule name -> points, from the report's table
    status: str  # the X-Spam-Status header, unfolded
    report: str  # SpamAssassin's whole output, for assertion messages


@dataclass(frozen=True)
class ExternalDkim:
    """One verdict per DKIM-Signature from each tool: "pass", "fail", "none", "invalid"..."""

    opendkim: tuple[str, ...]
    mail_dkim: tuple[str, ...]
    details: str  # both tools' own words, for assertion messages

    @property
    def passed(self) -> bool:
        return bool(self.opendkim) and all(v == "pass" for v in self.opendkim + self.mail_dkim)


@functools.cache
def spamassassin_problem() -> str | None:
    return None if shutil.which("spamassassin") else "spamassassin is not installed"


@functools.cache
def dkim_problem() -> str | None:
    if not shutil.which("opendkim"):
        return "opendkim is not installed"
    check = ["perl", "-MMail::DKIM::Verifier", "-MNet::DNS::Resolver::Mock", "-e", "1"]
    if shutil.which("perl") is None or subprocess.run(check, capture_output=True).returncode:
        return "Perl Mail::DKIM or Net::DNS::Resolver::Mock is missing"
    return None


class SpamAssassin:
    def check(self, raw: bytes, *config: str) -> SpamReport:
        """Score ``raw`` with SpamAssassin's local tests; ``config`` adds lines of local.cf."""
        lines = (*SPAMASSASSIN_CONFIG, *config)
        command = ["spamassassin", "-t", "-L", "-x", *(f"--cf={line}" for line in lines)]
        done = subprocess.run(command, input=raw, capture_output=True, timeout=120, check=True)
        out = done.stdout.decode("utf-8", "replace")
        status = re.search(r"^X-Spam-Status: (.*(?:\n[ \t].*)*)", out, re.MULTILINE)
        if status is None:
            raise AssertionError(f"no X-Spam-Status in SpamAssassin's output:\n{out}")
        unfolded = " ".join(status.group(1).split())
        numbers = re.search(r"score=(-?[\d.]+) required=(-?[\d.]+)", unfolded)
        assert numbers is not None, unfolded
        table = re.findall(r"^ *(-?\d+(?:\.\d+)?) ([A-Z][A-Z0-9_]+) ", out, re.MULTILINE)
        return SpamReport(
            score=float(numbers.group(1)),
            required=float(numbers.group(2)),
            is_spam=unfolded.startswith("Yes"),
            rules={name: float(points) for points, name in table},
            status=unfolded,
            report=out,
        )


def _signers(message: bytes) -> list[str]:
    """``selector._domainkey.domain`` of each DKIM-Signature header, in order."""
    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("ascii", "replace")
    names = []
    for field in re.findall(r"^DKIM-Signature:(.*(?:\r?\n[ \t].*)*)", head, re.M | re.I):
        tags = dict(
            (k.strip(), "".join(v.split()))
            for k, _, v in (t.partition("=") for t in field.split(";"))
        )
        names.append(f"{tags.get('s', '')}._domainkey.{tags.get('d', '')}")
    return names


def verify_dkim_externally(
    message: bytes, public_key_txt: str | bytes | Mapping[str, str]
) -> ExternalDkim:
    """Verify every DKIM signature of ``message`` with OpenDKIM and with Mail::DKIM.

    ``public_key_txt`` is the TXT record (``v=DKIM1; k=rsa; p=...``) for every signature's
    selector and domain, or a mapping ``"selector._domainkey.domain" -> record``. No DNS.
    """
    if isinstance(public_key_txt, bytes):
        public_key_txt = public_key_txt.decode("ascii")
    if isinstance(public_key_txt, str):
        keys = {name: public_key_txt for name in _signers(message)}
    else:
        keys = dict(public_key_txt)
    with tempfile.TemporaryDirectory(prefix="mailer-dkim-") as work:
        folder = Path(work)
        (folder / "message.eml").write_bytes(message)
        opendkim, opendkim_words = _opendkim(folder, keys)
        mail_dkim, mail_dkim_words = _mail_dkim(folder, keys, message)
    details = f"OpenDKIM: {opendkim_words.strip()}\nMail::DKIM: {mail_dkim_words.strip()}"
    return ExternalDkim(opendkim, mail_dkim, details)


def _opendkim(folder: Path, keys: Mapping[str, str]) -> tuple[tuple[str, ...], str]:
    (folder / "keys").write_text("".join(f"{n} {r}\n" for n, r in keys.items()))
    (folder / "opendkim.conf").write_text(
        f"Mode v\nTestPublicKeys {folder / 'keys'}\nSyslog no\nAuthservID mailer-test\n"
    )
    command = ["opendkim", "-x", str(folder / "opendkim.conf"), "-vv", "-t"]
    done = subprocess.run(
        [*command, str(folder / "message.eml")], capture_output=True, timeout=60, check=True
    )
    out = done.stdout.decode("utf-8", "replace")
    # -vv prints the Authentication-Results header it would add: one dkim=RESULT per signature.
    verdicts = tuple(re.findall(r"\bdkim=([a-z]+)", out)) or ("none",)
    return verdicts, out + done.stderr.decode("utf-8", "replace")


def _mail_dkim(
    folder: Path, keys: Mapping[str, str], message: bytes
) -> tuple[tuple[str, ...], str]:
    zone = folder / "zone"
    zone.write_text("".join(f"{name}. 300 IN TXT {_txt(r)}\n" for name, r in keys.items()))
    done = subprocess.run(
        ["perl", "-e", MAIL_DKIM_VERIFIER, str(zone)],
        input=message,
        capture_output=True,
        timeout=60,
        check=True,
    )
    out = done.stdout.decode("utf-8", "replace")
    verdicts = tuple(line.split("\t", 1)[0] for line in out.splitlines() if line)
    return tuple(v for v in verdicts if v != "none") or ("none",), out


def _txt(record: str) -> str:
    """A zone-file TXT value: quoted strings of at most 255 characters each."""
    chunks = [record[i : i + 250] for i in range(0, len(record), 250)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
