"""Money is integer minor units plus a lower-case ISO 4217 code; never floats."""

from __future__ import annotations

# ISO 4217 codes Stripe can charge in (a subset of the standard; all lower case).
CURRENCIES = frozenset(
    """
    aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
    byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel
    gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd
    kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn
    nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd
    shp sle sos srd std szl thb tjs tnd top try ttd twd tzs uah ugx usd uyu uzs vnd vuv wst
    xaf xcd xof xpf yer zar zmw
    """.split()
)

# Currencies whose smallest unit is the whole unit (Stripe's "zero-decimal" list).
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())

MAX_AMOUNT = 99_999_999  # Stripe's ceiling for one charge, in minor units


def normalise_currency(code: str) -> str:
    """Lower-case `code`, or raise ValueError if it is not a currency we can charge in."""
    lowered = code.strip().lower()
    if lowered not in CURRENCIES:
        raise ValueError(f"'{code}' is not an ISO 4217 currency code Stripe accepts")
    return lowered


# Stripe's minimum charge per currency, in minor units ("Minimum and maximum charge amounts",
# docs.stripe.com/currencies). Stripe states the others as the equivalent of US$0.50 at the
# day's rate, which no table can hold: there checkout answers Stripe's own refusal
# (`amount_too_small`) as the same 422 `below_minimum_charge` (ticketing.payments).
MINIMUM_CHARGE = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500, "dkk": 250,
    "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300,
    "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
    "krw": 1000,  # not on Stripe's table: US$0.50 is about 700 won; 1,000 leaves room for the rate
}


def minimum_charge(currency: str) -> int | None:
    """Stripe's smallest charge in `currency` (minor units), or None where only Stripe knows."""
    return MINIMUM_CHARGE.get(currency.lower())


def below_minimum(amount: int, currency: str) -> bool:
    """A paid amount (above 0) that Stripe would refuse as too small."""
    least = minimum_charge(currency)
    return least is not None and 0 < amount < least
