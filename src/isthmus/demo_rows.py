"""Deterministic rows of the synthetic legacy dental database, streamed a few offices at a time.

Every value is already in a form all three legacy databases take as input: ``str`` (text,
ISO dates, timestamps with six fractional digits, decimals as exact strings), ``int``
(keys, quantities, 0/1 booleans), ``float`` or ``None``. Only ``Random.random()`` is drawn,
whose sequence Python keeps stable across versions, so a (scale, seed) pair always yields
the same rows, whatever the chunk size.
"""

from __future__ import annotations

import functools
import random
import unicodedata
from collections.abc import Iterator, Mapping, Set
from datetime import date, timedelta
from typing import Any

Row = tuple[Any, ...]
Chunk = dict[str, list[Row]]

PER_OFFICE = {"offices": 1, "profiles": 4, "doctors": 4}
PER_OFFICE.update(patients=120, orders=360, products=720)
DOCTOR_PATIENTS, PATIENT_ORDERS, ORDER_PRODUCTS = 30, 3, 2
# Where each table's ids start: unrelated ranges, like tables grown over years.
ID_START = {"offices": 1000, "profiles": 1, "doctors": 500}
ID_START.update(patients=10_000, orders=100_000, products=1_000_000)


def _pool(text: str) -> tuple[str, ...]:
    return tuple(text.split("|"))


FIRST_NAMES = _pool(
    "José|Zoë|Łukasz|María|Jürgen|Søren|Chloé|João|Ömer|Siobhán|Mikołaj|Renée|François|Björn"
    "|Çağrı|Đorđe|Håkon|Ngozi|Mei|Aarav|Olivia|Liam|Noah|Emma|Ava|Lucas|Isabella|Mateo|Ève"
    "|Anne-Marie"
)
LAST_NAMES = _pool(
    "Ñúñez|O'Brien|García|Müller|Kowalski|Dvořák|Nguyễn|Smith|Johnson|Schäfer|D'Angelo"
    "|van der Berg|Ólafsdóttir|Peña|Brontë|Saint-Exupéry|Møller|Öztürk|Williams|Brown|Lee|Kim"
    "|Singh|Silva|Rossi|Ferreira|McDonald|Smith |Łęcki|Ibáñez"
)
CITIES = _pool(
    "São Paulo|Zürich|Kraków|Málaga|Montréal|Reykjavík|Düsseldorf|New York|Chicago"
    "|Ciudad de México|Göteborg|Besançon|Dublin|Auckland"
)
TIMEZONES = _pool(  # of CITIES, in the same order
    "America/Sao_Paulo|Europe/Zurich|Europe/Warsaw|Europe/Madrid|America/Toronto"
    "|Atlantic/Reykjavik|Europe/Berlin|America/New_York|America/Chicago|America/Mexico_City"
    "|Europe/Stockholm|Europe/Paris|Europe/Dublin|Pacific/Auckland"
)
OFFICE_KINDS = _pool(
    "Dental Care|Clínica Dental|Smile Studio|Zahnarztpraxis|Family Dentistry|Cabinet dentaire"
)
STREETS = _pool(
    "Rue de l'Église|Calle Ñandú|Main St.|Königsallee|Avenida Paulista|Ulica Długa"
    "|O'Connell Street|5th Ave"
)
SPECIALTIES = _pool(
    "General Dentistry|Orthodontics|Endodontics|Periodontics|Prosthodontics"
    "|Pediatric Dentistry|Oral Surgery|Odontopediatría"
)
ROLES = _pool("dentist|dentist|hygienist|hygienist|assistant|admin")
STATUSES = _pool("delivered|delivered|delivered|shipped|placed|placed|draft|cancelled")
PHONES = _pool("+1 (555) 010-%04d|555.010.%04d|+49 30 123%04d|+34 612 34 %04d|(020) 7946 %04d")
PRODUCTS = _pool(
    'Composite resin A2 – 4 g syringe|Floss "Ultra" 50 m|Zahnbürste weich|Brosse à dents souple'
    "|Fluoride varnish 5% (NaF)|Impression tray, size L|Gloves nitrile M \\ box of 100"
    "|Prophy paste – mint|Mouthwash 500 ml|Orthodontic wax|Bite block|Retainer case 🦷"
)
# Free text as people typed it into a legacy form: every character a CSV/TSV dump or a
# naive escaper gets wrong, the literal strings "NULL" and "\N", padding that must survive.
NOTES = _pool(
    "Allergic to penicillin.|Prefers morning appointments.\nCall before 10am."
    '|Tab\tseparated\tvalues from the 2009 import|Said "no more X-rays" at last visit'
    "|Patient's mother is Mrs O'Brien|Scan stored at C:\\scans\\2019\\img_001.tif"
    "|Line one\r\nLine two (Windows newline)|Très bien — recall in 6 months ☺"
    "|🦷 implant follow-up 😀|\\N|NULL|  leading and trailing spaces  "
    "|Ends with a backslash \\|Ends with a tab\t|Multi\n\nparagraph\n\n\tindented"
    "|Quote ' and double \" and backtick ` together|Zoë's crown: 2× E.max, shade A1"
)
PROFILE_NOTES = _pool(
    "Part-time (Mon/Wed)|On leave until March|Speaks español & français"
    '|Key holder\tAlarm code in safe|Signs as "Dr. J"'
)

_EPOCH = date(2015, 1, 1)
_DAY_US = 86_400_000_000
_YEAR_US = 365 * _DAY_US
_days: dict[int, str] = {}


def _day(n: int) -> str:
    """ISO date of day ``n`` after the epoch (memoised: a few thousand distinct days)."""
    text = _days.get(n)
    if text is None:
        text = _days[n] = (_EPOCH + timedelta(days=n)).isoformat()
    return text


def fmt_ts(us: int) -> str:
    """Microseconds after 2015-01-01 as ``YYYY-MM-DD HH:MM:SS.ffffff`` (six digits, always)."""
    day, rest = divmod(us, _DAY_US)
    secs, micro = divmod(rest, 1_000_000)
    return f"{_day(day)} {_clock()[secs]}.{micro:06d}"


@functools.cache
def _clock() -> tuple[str, ...]:
    """Every ``HH:MM:SS`` of a day: formatting a timestamp is the generator's hottest spot."""
    return tuple(f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400))


def fmt_cents(cents: int) -> str:
    sign, cents = ("-", -cents) if cents < 0 else ("", cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


_NOT_DECOMPOSABLE = str.maketrans({"Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d"})


def _slug(text: str) -> str:
    """ASCII local part for an e-mail address, as a legacy signup form would have made it."""
    text = unicodedata.normalize("NFKD", text.translate(_NOT_DECOMPOSABLE))
    ascii_text = text.encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_text.lower() if ch.isalnum())


_FIRST_SLUGS = tuple(_slug(n) for n in FIRST_NAMES)
_LAST_SLUGS = tuple(_slug(n) for n in LAST_NAMES)


class _Ids:
    """Increasing ids with the holes of a real system: ~5% single deleted rows, and now and
    then a run of a hundred or so (a purge). ``gap`` is an id known never to exist."""

    __slots__ = ("gap", "next", "rnd")

    def __init__(self, start: int, rng: random.Random) -> None:
        self.next, self.gap, self.rnd = start, start - 1, rng.random

    def take(self) -> int:
        r = self.rnd()
        if r < 0.05:
            self.gap = self.next
            self.next += 1 if r >= 0.0003 else 20 + int(r * 600_000)
        self.next += 1
        return self.next - 1


class _Orphans:
    """Which rows of a child table get a parent id that does not exist (by position)."""

    __slots__ = ("planted", "position")

    def __init__(self, planted: Set[int]) -> None:
        self.planted, self.position = planted, -1

    def parent(self, parent_id: int, parent_ids: _Ids) -> int:
        self.position += 1
        return parent_ids.gap if self.position in self.planted else parent_id


class _Generator:
    def __init__(self, scale: int, seed: int, orphans: Mapping[str, Set[int]]) -> None:
        rng = random.Random(seed)
        self.rnd = rng.random
        self.ids = {name: _Ids(start, rng) for name, start in ID_START.items()}
        self.orphans = {name: _Orphans(orphans.get(name, frozenset())) for name in PER_OFFICE}
        self.office_step = 5 * _YEAR_US // scale  # offices opened over five years
        self.chunk: Chunk = {name: [] for name in PER_OFFICE}

    def pick(self, pool: tuple[str, ...]) -> str:
        return pool[int(self.rnd() * len(pool))]

    def updated(self, created: int) -> str:
        r = self.rnd()
        return fmt_ts(created if r < 0.4 else created + int(r * r * _YEAR_US))

    def office(self, n: int) -> None:
        rnd, pick = self.rnd, self.pick
        office_id = self.ids["offices"].take()
        city = int(rnd() * len(CITIES))
        created = n * self.office_step + int(rnd() * self.office_step)
        self.chunk["offices"].append(
            (
                office_id,
                f"{pick(OFFICE_KINDS)} {CITIES[city]}",
                f"{1 + int(rnd() * 400)} {pick(STREETS)}",
                CITIES[city],
                pick(PHONES) % (n % 10_000),
                TIMEZONES[city],
                0 if rnd() < 0.1 else 1,
                fmt_ts(created),
                self.updated(created),
            )
        )
        for _ in range(4):
            self.profile_and_doctor(office_id, created)

    def profile_and_doctor(self, office_id: int, office_created: int) -> None:
        rnd, pick = self.rnd, self.pick
        profile_id = self.ids["profiles"].take()
        first, last = int(rnd() * len(FIRST_NAMES)), int(rnd() * len(LAST_NAMES))
        r = rnd()
        note = None if r < 0.5 else "" if r < 0.6 else pick(PROFILE_NOTES)
        created = office_created + int(rnd() * 30 * _DAY_US)
        email = f"{_FIRST_SLUGS[first]}.{_LAST_SLUGS[last]}.{profile_id}@office{office_id}.example"
        self.chunk["profiles"].append(
            (
                profile_id,
                self.orphans["profiles"].parent(office_id, self.ids["offices"]),
                email,
                FIRST_NAMES[first],
                LAST_NAMES[last],
                pick(ROLES),
                note,
                fmt_ts(created),
                self.updated(created),
            )
        )
        doctor_id = self.ids["doctors"].take()
        created += int(rnd() * 7 * _DAY_US)
        self.chunk["doctors"].append(
            (
                doctor_id,
                self.orphans["doctors"].parent(profile_id, self.ids["profiles"]),
                f"DDS-{doctor_id * 7919 % 1_000_000:06d}",
                pick(SPECIALTIES),
                fmt_cents(6000 + int(rnd() * 24_000)),
                fmt_ts(created),
                self.updated(created),
            )
        )
        for _ in range(DOCTOR_PATIENTS):
            self.patient(doctor_id, created)

    def patient(self, doctor_id: int, doctor_created: int) -> None:
        rnd = self.rnd
        patient_id = self.ids["patients"].take()
        first, last = int(rnd() * len(FIRST_NAMES)), int(rnd() * len(LAST_NAMES))
        r = rnd()
        email = (
            None
            if r < 0.2
            else ""
            if r < 0.23
            else f"{_FIRST_SLUGS[first]}_{_LAST_SLUGS[last]}{patient_id % 1000}@mail.example"
        )
        r = rnd()
        birth = None if r < 0.05 else _day(-30_000 + int(r * 31_000))
        r = rnd()
        balance = 0 if r < 0.6 else -int((r - 0.6) * 400_000) if r < 0.65 else int(r * 500_000)
        r = rnd()
        notes = None if r < 0.4 else "" if r < 0.5 else NOTES[int((r - 0.5) * 2 * len(NOTES))]
        r = rnd()
        phone = "" if r < 0.02 else PHONES[int(r * len(PHONES))] % int(r * 10_000)
        created = doctor_created + int(rnd() * 2 * _YEAR_US)
        self.chunk["patients"].append(
            (
                patient_id,
                self.orphans["patients"].parent(doctor_id, self.ids["doctors"]),
                FIRST_NAMES[first],
                LAST_NAMES[last],
                birth,
                email,
                phone,
                fmt_cents(balance),
                notes,
                fmt_ts(created),
                self.updated(created),
            )
        )
        for _ in range(PATIENT_ORDERS):
            self.order(patient_id, created)

    def order(self, patient_id: int, patient_created: int) -> None:
        rnd = self.rnd
        order_id = self.ids["orders"].take()
        created = patient_created + int(rnd() * _YEAR_US)
        stamp = fmt_ts(created)
        total = sum(self.product(order_id, created, stamp) for _ in range(ORDER_PRODUCTS))
        status = self.pick(STATUSES)
        placed = None if status == "draft" else fmt_ts(created + int(rnd() * 3 * _DAY_US))
        self.chunk["orders"].append(
            (
                order_id,
                self.orphans["orders"].parent(patient_id, self.ids["patients"]),
                f"ORD-{order_id:08d}",
                status,
                fmt_cents(total),
                placed,
                stamp,
                self.updated(created),
            )
        )

    def product(self, order_id: int, order_created: int, order_stamp: str) -> int:
        """Append one product line; return its amount in cents (the order's total sums them)."""
        rnd = self.rnd
        product_id = self.ids["products"].take()
        quantity = 1 + int(rnd() * 20)
        price = 99 + int(rnd() * 25_000)
        r = rnd()  # one draw picks the article: its SKU, name and weight go together
        self.chunk["products"].append(
            (
                product_id,
                self.orphans["products"].parent(order_id, self.ids["orders"]),
                f"SKU-{int(r * 9000) + 1000}",
                PRODUCTS[int(r * len(PRODUCTS))],
                quantity,
                fmt_cents(price),
                None if r < 0.15 else round(r * 5000, 1),
                order_stamp,
                order_stamp if rnd() < 0.7 else self.updated(order_created),
            )
        )
        return quantity * price


def generate(
    scale: int, seed: int, *, orphans: Mapping[str, Set[int]], offices_per_chunk: int = 25
) -> Iterator[Chunk]:
    """Rows of ``scale`` offices and everything below them, a chunk per ``offices_per_chunk``.

    ``orphans`` maps a child table to the positions (0-based, in generation order) of rows
    whose foreign key gets a parent id that never existed (a parent deleted long ago).
    """
    gen = _Generator(scale, seed, orphans)
    for n in range(scale):
        gen.office(n)
        if (n + 1) % offices_per_chunk == 0 or n + 1 == scale:
            yield gen.chunk
            gen.chunk = {name: [] for name in PER_OFFICE}
