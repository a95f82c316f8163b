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
