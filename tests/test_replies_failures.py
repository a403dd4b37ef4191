"""The classifier against the failures found with real-world mail (issue 12).

Each message here is shaped after a published format: RFC 5965 (ARF) Appendix B, RFC 3464
(DSN), Microsoft's JMRP documentation (X-HmXmrOriginalRecipient), the Amazon SES
notification contents (https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html)
and the plain-text bounces of the MTAs named. The real messages other projects publish
are measured in tests/realworld/.
"""

from __future__ import annotations

import json

import pytest

from suppression.replies import Classification, classify

OWN = "unsubscribe@itcare.example"
TRUSTED = ("mx.itcare.example",)


def run(raw: bytes, trusted: tuple[str, ...] = TRUSTED) -> Classification:
    return classify(raw, unsubscribe_address=OWN, trusted_authserv_ids=trusted)


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


# --- complaints ------------------------------------------------------------------------

ARF = """From: <abusedesk@example.com>
Date: Thu, 8 Mar 2005 17:40:36 EDT
Subject: FW: Earn money
To: <abuse@itcare.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
     boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT. To stop receiving these reports,
unsubscribe at the feedback loop page.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: SomeGenerator/1.0
Version: 1
Original-Mail-From: <news@itcare.example>
Original-Rcpt-To: <Person@Example.com>
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT
Reporting-MTA: dns; mail.example.com
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

From: IT Care <news@itcare.example>
To: {to}
Subject: IT Care newsletter
DKIM-Signature: v=1; a=rsa-sha256; d=itcare.example; s=s1;
 h=from:to:subject:list-unsubscribe:list-unsubscribe-post; bh=abc; b=def
List-Unsubscribe: <https://itcare.example/u/Zx81kQ>
MIME-Version: 1.0
Content-type: text/plain

Hello. Unsubscribe: https://itcare.example/u/Zx81kQ
--part1_13d.2e68ed54_boundary--
"""


def test_arf_complaint_suppresses_the_reported_recipient_never_the_reporter() -> None:
    result = run(crlf(ARF.format(to="<person@example.com>")))
    assert result.kind == "complaint"
    assert result.automatic
    assert result.addresses == ("person@example.com",)
    assert "abusedesk@example.com" not in result.addresses


def test_arf_without_original_rcpt_to_uses_the_reported_message_recipient() -> None:
    raw = ARF.format(to="<someone@example.org>").replace(
        "Original-Rcpt-To: <Person@Example.com>\n", ""
    )
    result = run(raw.encode())
    assert (result.kind, result.automatic, result.addresses) == (
        "complaint", True, ("someone@example.org",))


def test_arf_with_redacted_recipient_goes_to_review() -> None:
    # AOL and others redact the recipient: nobody we can match.
    raw = ARF.format(to="redacted@aol.com").replace(
        "Original-Rcpt-To: <Person@Example.com>\n", ""
    )
    result = run(raw.encode())
    assert (result.kind, result.automatic, result.addresses) == ("complaint", False, ())


def test_unsubscribe_words_in_a_report_or_the_reported_mail_are_no_request() -> None:
    # The report's text and the reported mail's DKIM h= list and footer say "unsubscribe".
    result = run(ARF.format(to="<person@example.com>").encode())
    assert result.kind == "complaint"
    assert "abusedesk@example.com" not in result.addresses


def test_not_spam_feedback_is_no_complaint() -> None:
    raw = ARF.format(to="<person@example.com>").replace("Feedback-Type: abuse",
                                                       "Feedback-Type: not-spam")
    result = run(raw.encode())
    assert result.kind == "other"
    assert not result.automatic


JMRP = """From: staff@hotmail.com
To: fbl@itcare.example
Subject: complaint about message from 198.51.100.7
Content-Type: multipart/mixed; boundary="jmrp"
MIME-Version: 1.0

--jmrp
Content-Type: text/plain

This is a Junk Mail Reporting Program report. To unsubscribe from JMRP, visit the
portal.

--jmrp
Content-Type: message/rfc822
Content-Disposition: attachment

X-HmXmrOriginalRecipient: <jane.doe@hotmail.com>
From: IT Care <news@itcare.example>
To: <jane.doe@hotmail.com>
Subject: IT Care newsletter

Hello Jane
--jmrp--
"""


def test_hotmail_jmrp_report_names_the_original_recipient() -> None:
    result = run(JMRP.encode())
    assert (result.kind, result.automatic, result.addresses) == (
        "complaint", True, ("jane.doe@hotmail.com",))
    assert "jmrp" in result.reasons


def _ses(message: dict[str, object]) -> bytes:
    envelope = {"Type": "Notification", "MessageId": "1", "Message": json.dumps(message)}
    return ("From: no-reply@sns.amazonaws.com\nTo: privacy@itcare.example\n"
            "Subject: AWS Notification Message\nContent-Type: text/plain\n\n"
            + json.dumps(envelope, indent=2) + "\n").encode()


def test_ses_complaint_forwarded_by_sns_mail() -> None:
    raw = _ses({"notificationType": "Complaint", "complaint": {
        "complainedRecipients": [{"emailAddress": "Recipient@Example.com"}],
        "complaintFeedbackType": "abuse", "timestamp": "2025-03-03T10:00:00.000Z"},
        "mail": {"source": "news@itcare.example"}})
    result = run(raw)
    assert (result.kind, result.automatic, result.addresses) == (
        "complaint", True, ("recipient@example.com",))


def test_ses_bounces_permanent_and_transient() -> None:
    hard = run(_ses({"notificationType": "Bounce", "bounce": {
        "bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "gone@example.com", "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 user unknown"}]}}))
    assert hard.kind == "bounce"
    assert [(f.address, f.permanent, f.cause) for f in hard.failures] == [
        ("gone@example.com", True, "no_such_user")]
    soft = run(_ses({"notificationType": "Bounce", "bounce": {
        "bounceType": "Transient", "bounceSubType": "MailboxFull",
        "bouncedRecipients": [{"emailAddress": "full@example.com"}]}}))
    assert [(f.address, f.permanent, f.cause) for f in soft.failures] == [
        ("full@example.com", False, "mailbox_full")]


# --- bounces ---------------------------------------------------------------------------

DSN = """From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@itcare.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic}

--b--
"""


@pytest.mark.parametrize(
    ("action", "status", "diagnostic", "permanent", "cause"),
    [
        ("failed", "5.1.1", "550 5.1.1 <x>: Recipient address rejected: User unknown", True,
         "no_such_user"),
        ("failed (bad destination mailbox address)", "5.1.1", "550 user unknown", True,
         "no_such_user"),
        ("failure", "5.1.2", "550 5.1.2 host not found", True, "unknown_domain"),
        ("failed", "5.4.4", "unrouteable address", True, "unknown_domain"),
        ("failed", "5.2.1", "550 5.2.1 mailbox disabled", True, "mailbox_disabled"),
        ("failed", "5.2.2", "552 5.2.2 mailbox full", False, "mailbox_full"),
        ("failed", "5.3.4", "552 5.3.4 message size exceeds fixed limit", False,
         "message_too_big"),
        ("failed", "5.7.1", "554 5.7.1 Service unavailable; client host blocked using "
         "zen.spamhaus.org", False, "blocked"),
        ("failed", "5.7.1", "550 5.7.1 message rejected as spam by content filtering", False,
         "spam"),
        ("failed", "5.7.26", "550 5.7.26 unauthenticated email is not accepted (DMARC)",
         False, "authentication"),
        ("failed", "5.0.0", "550 5.0.0 reputation of the sending IP is too low", False,
         "reputation"),
        ("expired", "4.4.7", "delivery time expired", False, "temporary"),
        ("delayed", "4.2.2", "452 4.2.2 over quota", False, "mailbox_full"),
    ],
)
def test_dsn_verdict_by_cause(action: str, status: str, diagnostic: str, permanent: bool,
                              cause: str) -> None:
    result = run(crlf(DSN.format(rcpt="person@example.com", action=action, status=status,
                                 diagnostic=diagnostic)))
    assert result.kind == "bounce"
    assert result.automatic, result.reasons
    assert [(f.address, f.permanent, f.cause) for f in result.failures] == [
        ("person@example.com", permanent, cause)]


def test_undecoded_encoded_word_is_never_an_address() -> None:
    rcpt = "=?utf-8?b?am9obg==?=@example.org"
    result = run(DSN.format(rcpt=rcpt, action="failed", status="5.1.1",
                            diagnostic="550 5.1.1 unknown").encode())
    assert rcpt.lower() not in result.addresses
    assert not any("=?" in a for a in result.addresses)
    assert not result.automatic


AUTO_REPLY_WITH_FAILURE = """From: Postmaster <postmaster@example.org>
To: news@itcare.example
Subject: Automatic reply: IT Care newsletter
Auto-Submitted: auto-replied
X-Autoreply: yes
Content-Type: text/plain

Delivery to the following recipient failed permanently:

    old.colleague@example.org

550 5.1.1 The email account that you tried to reach does not exist.
"""


def test_auto_submitted_does_not_hide_a_550_511() -> None:
    result = run(AUTO_REPLY_WITH_FAILURE.encode())
    assert result.kind == "bounce"
    assert [(f.address, f.permanent) for f in result.failures] == [
        ("old.colleague@example.org", True)]


def test_out_of_office_with_failure_words_goes_to_review_never_ignored() -> None:
    raw = (b"From: Anna <anna@example.org>\nTo: news@itcare.example\n"
           b"Subject: Out of office\nAuto-Submitted: auto-replied\n\n"
           b"I am away. Your message to my old address could not be delivered: 5.1.1\n")
    result = run(raw)
    assert result.kind != "auto_reply"
    assert not result.automatic


PLAIN_BOUNCES = {
    "sendmail": (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>\n"
        "Subject: Returned mail: see transcript for details\n\n"
        "The original message was received at Mon, 3 Mar 2025 10:00:00 +0100\n"
        "from mail.itcare.example [192.0.2.10]\n\n"
        "   ----- The following addresses had permanent fatal errors -----\n"
        "<lost@example.org>\n    (reason: 550 5.1.1 <lost@example.org>... User unknown)\n\n"
        "   ----- Transcript of session follows -----\n"
        "... while talking to mx.example.org.:\n>>> RCPT To:<lost@example.org>\n"
        "<<< 550 5.1.1 <lost@example.org>... User unknown\n",
        "lost@example.org", True),
    "exim": (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n"
        "Subject: Mail delivery failed: returning message to sender\n\n"
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        "  lost@example.org\n    SMTP error from remote mail server after RCPT TO:"
        "<lost@example.org>:\n    550 5.1.1 No such user here\n",
        "lost@example.org", True),
    "exim_delay": (
        "From: Mail Delivery System <Mailer-Daemon@mx.example.org>\n"
        "Subject: Warning: message 1abc-000 delayed 24 hours\n\n"
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent has not yet been delivered to one or more of its\n"
        "recipients after more than 24 hours on the queue on mx.example.org.\n\n"
        "  slow@example.org\n    Delay reason: SMTP error from remote mail server after "
        "RCPT TO:<slow@example.org>:\n    451 4.3.0 Temporary lookup failure\n\n"
        "No action is required on your part. Delivery attempts will continue for some time.\n",
        "slow@example.org", False),
    "qmail": (
        "From: MAILER-DAEMON@mail.example.org\nSubject: failure notice\n\n"
        "Hi. This is the qmail-send program at mail.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        "<lost@example.org>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\nReturn-Path: <news@itcare.example>\n"
        "To: lost@example.org\n",
        "lost@example.org", True),
    "dragonfly_dma_null_sender": (
        "From: MAILER-DAEMON <>\nSubject: Mail delivery failed\n\n"
        "This is the DragonFly MTA at host.example.org.\n\n"
        "There was an error delivering your mail to <lost@example.org>.\n\n"
        "remote delivery deferred: 550 5.1.1 mailbox does not exist\n",
        "lost@example.org", True),
    "mail_ru_localised": (
        "From: Mail Delivery System <mailer-daemon@corp.mail.ru>\n"
        "Subject: =?utf-8?b?0J3QtSDQtNC+0YHRgtCw0LLQu9C10L3Qvg==?=\n\n"
        "Message was not accepted -- invalid mailbox.  Local mailbox lost@mail.ru is "
        "unavailable: user not found\n",
        "lost@mail.ru", True),
    "exchange_2003": (
        "From: System Administrator <postmaster@example.org>\n"
        "Subject: Undeliverable: IT Care newsletter\n\n"
        "Your message did not reach some or all of the intended recipients.\n\n"
        "      Subject:  IT Care newsletter\n      Sent:     3/3/2025 10:00 AM\n\n"
        "The following recipient(s) could not be reached:\n\n"
        "      lost@example.org on 3/3/2025 10:00 AM\n"
        "            The e-mail account does not exist at the organization this message "
        "was sent to.\n            <mx.example.org #5.1.1>\n",
        "lost@example.org", True),
    "policy_block_is_soft": (
        "From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\n\n"
        "<person@example.org>: host mx.example.org[192.0.2.5] said: 554 5.7.1 Service "
        "unavailable; Client host [192.0.2.10] blocked using bl.spamcop.net (in reply to "
        "RCPT TO command)\n",
        "person@example.org", False),
    "mailbox_full_is_soft": (
        "From: MAILER-DAEMON@mx.example.org\nSubject: Undelivered Mail Returned to Sender\n\n"
        "<person@example.org>: host mx.example.org[192.0.2.5] said: 552 5.2.2 Mailbox full "
        "(in reply to RCPT TO command)\n",
        "person@example.org", False),
}


@pytest.mark.parametrize("name", sorted(PLAIN_BOUNCES))
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_plain_text_bounces(name: str, ending: str) -> None:
    text, address, permanent = PLAIN_BOUNCES[name]
    raw = ("To: bounces@itcare.example\n" + text).replace("\n", ending).encode()
    result = run(raw)
    assert result.kind == "bounce", result.reasons
    assert result.automatic, result.reasons
    assert [(f.address, f.permanent) for f in result.failures] == [(address, permanent)]


def test_bounce_with_two_recipients_gives_each_its_verdict() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.org\nTo: bounces@itcare.example\n"
           b"Subject: Undelivered Mail Returned to Sender\n\n"
           b"<one@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n\n"
           b"<two@example.org>: host mx.example.org said: 552 5.2.2 Mailbox full\n")
    result = run(raw)
    assert [(f.address, f.permanent, f.cause) for f in result.failures] == [
        ("one@example.org", True, "no_such_user"), ("two@example.org", False, "mailbox_full")]


# --- never a wrongful opt-out ----------------------------------------------------------

PERSON = """From: Jan <jan@example.com>
To: privacy@itcare.example
Subject: newsletter
Authentication-Results: mx.itcare.example; dkim=pass header.d=example.com
Content-Type: text/plain; charset=utf-8

{body}
"""


@pytest.mark.parametrize(
    "body",
    [
        "I do NOT want to unsubscribe, I just changed jobs.",
        "Hi, I'm not looking to unsubscribe. Can you send the slides?",
        "Please don't remove me from the list!",
        "Unsubscribe is not what I want: please keep me subscribed.",
        "I unsubscribed by mistake, please sign me up again.",
        "Ik wil me niet afmelden, maar mijn adres is veranderd.",
        "Je ne veux pas me désinscrire.",
        "Ich möchte mich nicht abmelden.",
    ],
)
def test_negated_requests_go_to_review(body: str) -> None:
    result = run(PERSON.format(body=body).encode())
    assert not result.automatic, result.reasons


@pytest.mark.parametrize(
    "body",
    ["Please unsubscribe me.", "please remove me, I never signed up for this",
     "Graag uitschrijven.", "Merci de me désinscrire.", "Bitte abmelden."],
)
def test_plain_requests_are_still_applied(body: str) -> None:
    result = run(PERSON.format(body=body).encode())
    assert (result.kind, result.automatic, result.addresses) == (
        "unsubscribe", True, ("jan@example.com",))


def test_a_mail_daemon_never_unsubscribes() -> None:
    raw = (b"From: MAILER-DAEMON@example.com\nTo: privacy@itcare.example\n"
           b"Authentication-Results: mx.itcare.example; dkim=pass header.d=example.com\n"
           b"Subject: unsubscribe\n\nunsubscribe\n")
    result = run(raw)
    assert result.kind != "unsubscribe" or not result.automatic


def test_without_trusted_ids_a_persons_request_goes_to_review() -> None:
    result = run(PERSON.format(body="Please unsubscribe me.").encode(), trusted=())
    assert result.kind == "unsubscribe"
    assert not result.automatic
    assert "not_authenticated" in result.reasons
