"""The fee arithmetic (ticketing.fees), for any prices, quantities and fee settings: the
lines sum to the charge, a refund never gives back more than a ticket's line paid, and
the organiser's net is exact."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ticketing import fees as fee_rules
from ticketing import money

fee_settings = st.builds(
    fee_rules.Fees,
    percent_bps=st.integers(0, fee_rules.BPS),
    fixed_cents=st.integers(0, fee_rules.MAX_FIXED),
    per=st.sampled_from(["ticket", "order"]),
    passed_on=st.booleans(),
    refundable=st.booleans(),
)
prices = st.lists(st.one_of(st.just(0), st.integers(1, money.MAX_AMOUNT // 40)), min_size=1, max_size=40)


@settings(max_examples=400)
@given(prices=prices, fees=st.one_of(st.none(), fee_settings))
def test_the_lines_sum_to_the_charge(prices, fees):
    priced = fee_rules.price_order(prices, fees)
    assert [t.price_cents for t in priced.tickets] == prices
    assert sum(t.paid_cents(fees) for t in priced.tickets) == priced.total_cents
    assert priced.total_cents == priced.subtotal_cents + priced.buyer_fees_cents == sum(prices) + priced.buyer_fees_cents
    assert priced.fees_cents == sum(t.fee_cents for t in priced.tickets)
    assert priced.buyer_fees_cents == (priced.fees_cents if fees is not None and fees.passed_on else 0)
    assert all(t.fee_cents == 0 for t in priced.tickets if t.price_cents == 0), "a free ticket carries no fee"
    assert all(isinstance(t.fee_cents, int) and t.fee_cents >= 0 for t in priced.tickets)
    if fees is not None:
        paid = [p for p in prices if p > 0]
        percent = sum(fee_rules.percent_of(p, fees.percent_bps) for p in paid)
        fixed = fees.fixed_cents * (len(paid) if fees.per == "ticket" else min(1, len(paid)))
        assert priced.fees_cents == percent + fixed, "a per-order fixed fee is spread exactly, never lost or doubled"
    if priced.subtotal_cents == 0:
        assert priced.total_cents == 0, "a free order stays free whatever the fees"


@given(price=st.integers(0, money.MAX_AMOUNT), bps=st.integers(0, fee_rules.BPS))
def test_percent_rounds_half_up_to_a_whole_minor_unit(price, bps):
    exact = Decimal(price) * bps / fee_rules.BPS
    assert fee_rules.percent_of(price, bps) == int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _expected_net(ticket: fee_rules.PricedTicket, fees: fee_rules.Fees | None, refunded: bool, organiser: bool) -> int:
    """What the organiser keeps of one ticket, by the rules in words."""
    fee = ticket.fee_cents if fees is not None else 0
    passed_on = fees is None or fees.passed_on
    if not refunded:
        return ticket.price_cents if passed_on else ticket.price_cents - fee
    if fees is not None and (fees.refundable or organiser):
        return 0  # everything went back, the platform's fee too
    return 0 if passed_on else -fee  # the platform kept its fee: the buyer's, or the organiser's when absorbed


@settings(max_examples=400)
@given(
    prices=prices, fees=st.one_of(st.none(), fee_settings),
    refunds=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=40, max_size=40),
)
def test_refunds_never_exceed_a_line_and_the_organisers_net_is_exact(prices, fees, refunds):
    priced = fee_rules.price_order(prices, fees)
    refunded = fees_returned = 0
    expected = 0
    for ticket, (refund, organiser) in zip(priced.tickets, refunds, strict=False):
        if refund:
            to_buyer, fee_back = fee_rules.refund_of(ticket, fees, organiser=organiser)
            assert 0 <= to_buyer <= ticket.paid_cents(fees), "a refund gives back at most what the line paid"
            assert 0 <= fee_back <= ticket.fee_cents
            assert to_buyer >= ticket.price_cents, "the price always comes back"
            refunded += to_buyer
            fees_returned += fee_back
        expected += _expected_net(ticket, fees, refund, organiser)
    assert refunded <= priced.total_cents
    net = fee_rules.organiser_net(priced.total_cents, refunded, priced.fees_cents, fees_returned)
    assert net == expected


@given(price=st.integers(0, 100_000), fees=st.one_of(st.none(), fee_settings))
def test_the_event_pages_all_in_price_is_what_a_one_ticket_order_charges(price, fees):
    assert price + fee_rules.one_ticket_fee(price, fees) == fee_rules.price_order([price], fees).total_cents


def test_zero_decimal_currencies_are_whole_units():
    """JPY: 1,000 yen at 3.5% is 35 yen (1,035 charged), never 103,500 or 1,035.0."""
    fees = fee_rules.Fees(percent_bps=350)
    priced = fee_rules.price_order([1000, 1000], fees)
    assert (priced.subtotal_cents, priced.fees_cents, priced.total_cents) == (2000, 70, 2070)
    assert money.below_minimum(49, "jpy") and not money.below_minimum(50, "jpy") and not money.below_minimum(0, "jpy")
