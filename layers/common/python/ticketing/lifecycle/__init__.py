"""The lifecycle of orders, tickets and refunds: the only code that writes a status.

Every allowed transition is declared once in `states` (from, to, and the DynamoDB
condition that makes it safe); `orders`, `refunds` and `tickets` here are the writes,
each one conditional transaction (a check-in: one conditional UpdateItem) carrying the
transition's log record (`TransitionLogItem`: who, when, from, to, why). `writes` holds
the one helper that recognises a failed condition, the one that recognises a conflict,
and the bounded, jittered retry that ends in a 503 with Retry-After.

    orders   (none) -hold-> pending -pay-> paid -refund_part-> partially_refunded
             pending -cancel-> canceled ; pending -expire-> expired
             expired/canceled -pay_late-> paid ; expired/canceled -refund_late-> refunded
             paid/partially_refunded -refund_full-> refunded
             paid/partially_refunded -dispute_open-> disputed -dispute_won-> paid/partially_refunded
             disputed -dispute_lost-> disputed (tickets stay void)
    tickets  (none) -hold-> pending -issue-> valid -check_in/admit_offline-> used
             pending -release-> void ; void -reissue-> valid (late payment)
             valid [+refund_id] (customer) or valid/used [+refund_id] (organiser): refund reserved;
               a ticket holding a refund is refused at the gate (`void`)
             valid/used -refund_void/refund_void_rest/dispute_void/cancel_void-> void
             void -dispute_restore-> valid/used
             valid -transfer-> valid (new holder, new code version; the old code void) ;
               valid/used -claim-> same (the new holder's account takes it)
    refunds  (none) -reserve-> pending -complete-> succeeded ; pending -undo-> (deleted)
    waiting-list places (`waitlist`, issue 19): (none) -join-> waiting -offer-> offered
             -take (in the hold's transaction)-> taken ; offered -lapse-> lapsed ;
             waiting/offered -leave-> left
    vouchers: a use is taken in the hold's transaction (uses < max_uses) and given back in
             the release's
    disputes (Stripe's status, fetched whenever an event about it arrives):
             open (needs_response, under_review, warning_*) or lost -> order disputed;
             won or warning_closed -> order restored if it was disputed, else left alone

The full diagram, generated from `states.TRANSITIONS`, is in the README ("Lifecycle").
"""

from ticketing.lifecycle.states import (  # noqa: F401 - the package's vocabulary
    EVER_PAID,
    ISSUED,
    LATE,
    OPEN_DISPUTES,
    REFUNDABLE,
    RESTORING_DISPUTES,
    DisputeStatus,
    OrderStatus,
    RefundStatus,
    TicketStatus,
)
