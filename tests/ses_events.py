"""SES notifications and the SNS events that carry them, shaped as AWS documents them
("Examples of event data that Amazon SES publishes to Amazon SNS"; the classic format is
"Amazon SNS notification examples for Amazon SES"): for unit and integration tests."""

from __future__ import annotations

import json
import uuid

ADDRESS = "jo.bounce@example.com"


def notification(kind="Bounce", *, message_id="0100018c-receipt-000000", order_id=None, tag=True, header=True,
                 bounce_type="Permanent", sub_type="General", timestamp="2026-12-01T09:59:59.512Z", classic=False, address=ADDRESS):
    """An SES notification for an email sent to `address`, as the SNS message's JSON text."""
    headers = [
        {"name": "From", "value": "Ticketing <tickets@example.com>"},
        {"name": "To", "value": address},
        {"name": "Subject", "value": f"Your tickets (order {order_id})"},
        {"name": "MIME-Version", "value": "1.0"},
    ]
    if header and order_id:
        headers.append({"name": "X-Ticketing-Order", "value": order_id})
    tags = {"ses:configuration-set": ["ticketing-dev"], "ses:source-ip": ["192.0.2.0"],
            "ses:from-domain": ["example.com"], "ses:caller-identity": ["ticketing-webhook"]}
    if tag and order_id:
        tags["order_id"] = [order_id]
    mail = {
        "timestamp": timestamp, "source": "Ticketing <tickets@example.com>",
        "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/tickets@example.com",
        "sendingAccountId": "123456789012", "messageId": message_id, "destination": [address],
        "headersTruncated": False, "headers": headers,
        "commonHeaders": {"from": ["Ticketing <tickets@example.com>"], "to": [address], "subject": "Your tickets"},
    }
    if not classic:
        mail["tags"] = tags
    body = {"notificationType" if classic else "eventType": kind, "mail": mail}
    if kind == "Bounce":
        body["bounce"] = {
            "bounceType": bounce_type, "bounceSubType": sub_type,
            "bouncedRecipients": [{"emailAddress": address, "action": "failed", "status": "5.1.1",
                                   "diagnosticCode": f"smtp; 550 5.1.1 <{address}>: user unknown"}],
            "timestamp": "2026-12-01T10:00:41.669Z", "feedbackId": "0100018c-feedback-000000",
            "reportingMTA": "dsn; mta.example.com",
        }
    elif kind == "Complaint":
        body["complaint"] = {
            "complainedRecipients": [{"emailAddress": address}], "timestamp": "2026-12-01T11:00:00.000Z",
            "feedbackId": "0100018c-complaint-000000", "userAgent": "Mozilla/5.0",
            "complaintFeedbackType": "abuse", "arrivalDate": "2026-12-01T10:59:59.000Z",
        }
    elif kind == "Reject":
        body["reject"] = {"reason": "Bad content"}
    return json.dumps(body)


def sns_event(*messages):
    return {"Records": [{
        "EventSource": "aws:sns", "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:ticketing-mail-events-dev:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {"Type": "Notification", "MessageId": str(uuid.uuid4()),
                "TopicArn": "arn:aws:sns:us-east-1:123456789012:ticketing-mail-events-dev", "Subject": None,
                "Message": message, "Timestamp": "2026-12-01T10:00:42.000Z", "SignatureVersion": "1",
                "Signature": "EXAMPLE", "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/cert.pem",
                "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe", "MessageAttributes": {}},
    } for message in messages]}
