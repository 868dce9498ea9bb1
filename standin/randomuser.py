"""A local stand-in for the randomuser.me API (v1.4), with failure injection for tests.

The pipeline must run with no internet, so the embedded stack serves users
from here; the producer talks to it exactly as it would to randomuser.me.

Usage:
    python -m standin.randomuser --host 127.0.0.1 --port 8765 [--malformed-rate 0.0]
    curl 'http://127.0.0.1:8765/api/?results=2&seed=abc&nat=gb,ir'

Endpoints: GET /api/ and /api/1.4/ (same thing), GET /health.

Query parameters (as randomuser.me):
    results   1..5000, default 1; more gives {"error": "..."}
    seed      any string; random when absent (and echoed in info.seed)
    page      >= 1, default 1
    nat       comma list of nationalities (AU,BR,CA,...,US); default all
    inc, exc  comma lists of top-level fields to include / exclude
    format    only "json" (the default)

Shape and quirks reproduced from the real API v1.4: `location.postcode` is an
int for most nationalities and a string for GB, CA, NL and IE; `id.value` is
null (and `id.name` empty) for IR, NZ, TR and UA; coordinates and timezone
offsets are strings; IR names are Persian, UA and RS names Cyrillic;
`dob`/`registered` are `{"date": "1993-07-20T09:44:18.674Z", "age": N}`;
`login` carries uuid, username, password, salt, md5, sha1, sha256. The same
seed + page + results + nat always gives the same users (ages are computed
against a fixed reference date, so responses are byte-for-byte reproducible).

Failure injection (for tests; all deterministic):
    fail=429|500|503|...   answer with that HTTP status instead of data
    fail=error             answer 200 with {"error": "..."} (a JSON error body)
    fail_times=N           only the first N identical requests fail (identical =
                           same seed, page, results, nat, fail); then success.
                           Absent: every request fails. Use with a seed.
    fail_page=P            only requests for page P fail (a run that breaks midway)
    retry_after=S          send `Retry-After: S` with the injected failure
    delay=S                sleep S seconds before answering (timeouts)
    malformed=R            corrupt a fraction R (0..1) of records: missing
                           fields, wrong types, unparseable values; which
                           records and how is fixed by seed + page.
    --malformed-rate R (or env DATASOURCE_MALFORMED_RATE) sets the default R.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_RESULTS = 5000
VERSION = "1.4"
# Ages are computed against this instant, not "now", so a seed replays byte for byte.
REFERENCE_DATE = datetime(2025, 1, 1, tzinfo=timezone.utc)
_REFERENCE_MS = int(REFERENCE_DATE.timestamp() * 1000)
_MS_PER_YEAR = 365.2425 * 24 * 3600 * 1000
_DOB_RANGE_MS = (int(datetime(1945, 1, 1, tzinfo=timezone.utc).timestamp() * 1000),
                 int(datetime(2006, 12, 31, tzinfo=timezone.utc).timestamp() * 1000))
_REGISTERED_RANGE_MS = (int(datetime(2002, 1, 1, tzinfo=timezone.utc).timestamp() * 1000),
                        int(datetime(2024, 12, 1, tzinfo=timezone.utc).timestamp() * 1000))
FIELDS = ("gender", "name", "location", "email", "login", "dob", "registered",
          "phone", "cell", "id", "picture", "nat")

# --- Per-nationality data ----------------------------------------------------
# Names are (as written, latin spelling for the email/username).
# id format: "#" digit, "@" upper-case letter; None name means "no national id" (value null).
# postcode format: int range (lo, hi) or a string pattern.

def _latin(*names: str) -> list[tuple[str, str]]:
    return [(n, n) for n in names]


NATIONALITIES: dict[str, dict[str, Any]] = {
    "AU": dict(country="Australia", id=("TFN", "#########"), postcode=(200, 9999), phone="0#-####-####",
               cell="04##-###-###", male=_latin("Jack", "Oliver", "Lucas", "Noah", "Cooper"),
               female=_latin("Charlotte", "Ruby", "Isla", "Mia", "Zoe"),
               last=_latin("Smith", "Taylor", "Walker", "Harris", "Kelly"),
               places=[("Sydney", "New South Wales"), ("Perth", "Western Australia"), ("Hobart", "Tasmania")],
               streets=["George St", "Hunter St", "Queen St", "Mill Road"]),
    "BR": dict(country="Brazil", id=("CPF", "###.###.###-##"), postcode=(10000, 99999), phone="(##) ####-####",
               cell="(##) #####-####", male=_latin("João", "Pedro", "Lucas", "Gabriel", "Raul"),
               female=_latin("Ana", "Luíza", "Beatriz", "Mariana", "Yara"),
               last=[("Araújo", "araujo"), ("Gonçalves", "goncalves"), ("da Silva", "dasilva"), ("Souza", "souza"),
                     ("Rocha", "rocha")],
               places=[("São Paulo", "São Paulo"), ("Recife", "Pernambuco"), ("Manaus", "Amazonas")],
               streets=["Rua Três", "Rua Principal", "Avenida Brasil", "Rua São Jorge"]),
    "CA": dict(country="Canada", id=("SIN", "#########"), postcode="@#@ #@#", phone="@##-###-####",
               cell="@##-###-####", male=_latin("Liam", "Ethan", "William", "Logan", "Félix"),
               female=_latin("Emma", "Olivia", "Chloé", "Maëlle", "Sophie"),
               last=[("Tremblay", "tremblay"), ("Roy", "roy"), ("Gagnon", "gagnon"), ("Côté", "cote"),
                     ("Martin", "martin")],
               places=[("Toronto", "Ontario"), ("Montréal", "Québec"), ("Calgary", "Alberta")],
               streets=["Dundas Rd", "King St", "Parliament St", "Rue Principale"]),
    "CH": dict(country="Switzerland", id=("AVS", "756.####.####.##"), postcode=(1000, 9999), phone="07# ### ## ##",
               cell="07# ### ## ##", male=_latin("Luca", "Noah", "Leon", "Julien", "Marco"),
               female=_latin("Lena", "Mia", "Chiara", "Léa", "Anna"),
               last=_latin("Müller", "Meier", "Schmid", "Keller", "Rochat"),
               places=[("Zürich", "Zürich"), ("Genève", "Genève"), ("Bern", "Bern")],
               streets=["Rue de la Gare", "Bahnhofstrasse", "Place du Marché", "Kirchweg"]),
    "DE": dict(country="Germany", id=("SVNR", "## ###### @ ###"), postcode=(10000, 99999), phone="0###-#######",
               cell="01##-#######", male=_latin("Jonas", "Felix", "Leon", "Maximilian", "Paul"),
               female=_latin("Hannah", "Lea", "Emilia", "Sophie", "Marie"),
               last=[("Müller", "muller"), ("Schmidt", "schmidt"), ("Schäfer", "schafer"), ("Becker", "becker"),
                     ("Wagner", "wagner")],
               places=[("Berlin", "Berlin"), ("München", "Bayern"), ("Köln", "Nordrhein-Westfalen")],
               streets=["Schlossstraße", "Gartenstraße", "Lindenstraße", "Bergstraße"]),
    "DK": dict(country="Denmark", id=("CPR", "######-####"), postcode=(1000, 9990), phone="########",
               cell="########", male=_latin("Magnus", "Oscar", "Emil", "Mikkel", "Frederik"),
               female=[("Ida", "ida"), ("Freja", "freja"), ("Clara", "clara"), ("Sofie", "sofie"), ("Åse", "ase")],
               last=[("Jensen", "jensen"), ("Nielsen", "nielsen"), ("Sørensen", "sorensen"), ("Larsen", "larsen"),
                     ("Møller", "moller")],
               places=[("København", "Hovedstaden"), ("Aarhus", "Midtjylland"), ("Odense", "Syddanmark")],
               streets=["Vestergade", "Østergade", "Skolevej", "Kirkevej"]),
    "ES": dict(country="Spain", id=("DNI", "########-@"), postcode=(1000, 52999), phone="9##-###-###",
               cell="6##-###-###", male=_latin("Hugo", "Pablo", "Álvaro", "Mario", "Iván"),
               female=_latin("Lucía", "Sofía", "Martina", "Paula", "Alba"),
               last=[("García", "garcia"), ("Fernández", "fernandez"), ("López", "lopez"), ("Martín", "martin"),
                     ("Núñez", "nunez")],
               places=[("Madrid", "Comunidad de Madrid"), ("Sevilla", "Andalucía"), ("Bilbao", "País Vasco")],
               streets=["Calle Mayor", "Calle de Alcalá", "Avenida de América", "Paseo de Extremadura"]),
    "FI": dict(country="Finland", id=("HETU", "######-###@"), postcode=(10000, 99999), phone="0#-###-###",
               cell="04#-###-##-##", male=_latin("Eino", "Väinö", "Onni", "Leevi", "Aleksi"),
               female=_latin("Aino", "Eevi", "Venla", "Aada", "Siiri"),
               last=[("Korhonen", "korhonen"), ("Virtanen", "virtanen"), ("Mäkinen", "makinen"),
                     ("Nieminen", "nieminen"), ("Heikkinen", "heikkinen")],
               places=[("Helsinki", "Uusimaa"), ("Tampere", "Pirkanmaa"), ("Oulu", "Pohjois-Pohjanmaa")],
               streets=["Hämeenkatu", "Mannerheimintie", "Pispalan Valtatie", "Aleksanterinkatu"]),
    "FR": dict(country="France", id=("INSEE", "############# ##"), postcode=(1000, 95999), phone="0#-##-##-##-##",
               cell="06-##-##-##-##", male=_latin("Lucas", "Théo", "Mathis", "Jules", "Noé"),
               female=_latin("Léa", "Chloé", "Manon", "Inès", "Camille"),
               last=[("Martin", "martin"), ("Bernard", "bernard"), ("Dubois", "dubois"), ("Lefèvre", "lefevre"),
                     ("Girard", "girard")],
               places=[("Paris", "Paris"), ("Lyon", "Rhône"), ("Marseille", "Bouches-du-Rhône")],
               streets=["Rue de la Mairie", "Rue Principale", "Place de l'Église", "Avenue Jean-Jaurès"]),
    "GB": dict(country="United Kingdom", id=("NINO", "@@ ## ## ## @"), postcode="@@# #@@", phone="0##-###-####",
               cell="07###-######", male=_latin("Harry", "George", "Oliver", "Jack", "Alfie"),
               female=_latin("Amelia", "Olivia", "Isla", "Poppy", "Ella"),
               last=_latin("Smith", "Jones", "Williams", "Brown", "Evans"),
               places=[("London", "Greater London"), ("Leeds", "West Yorkshire"), ("Bristol", "Avon")],
               streets=["High Street", "Station Road", "Church Lane", "Victoria Road"]),
    "IE": dict(country="Ireland", id=("PPS", "#######@"), postcode="@## @#@#", phone="0#1-###-####",
               cell="08#-###-####", male=_latin("Seán", "Conor", "Cian", "Darragh", "Oisín"),
               female=_latin("Aoife", "Saoirse", "Niamh", "Róisín", "Ciara"),
               last=[("Murphy", "murphy"), ("Kelly", "kelly"), ("O'Sullivan", "osullivan"), ("Walsh", "walsh"),
                     ("Byrne", "byrne")],
               places=[("Dublin", "Leinster"), ("Cork", "Munster"), ("Galway", "Connacht")],
               streets=["Main Street", "Church Road", "Grafton Street", "Patrick Street"]),
    "IN": dict(country="India", id=("UIDAI", "############"), postcode=(100000, 999999), phone="####-#######",
               cell="9#########", male=[("Aarav", "aarav"), ("आदित्य", "aditya"), ("Vihaan", "vihaan"),
                                       ("Arjun", "arjun"), ("रोहन", "rohan")],
               female=[("Ananya", "ananya"), ("दिया", "diya"), ("Saanvi", "saanvi"), ("Isha", "isha"),
                       ("प्रिया", "priya")],
               last=[("Sharma", "sharma"), ("पटेल", "patel"), ("Reddy", "reddy"), ("Iyer", "iyer"),
                     ("Nair", "nair")],
               places=[("Mumbai", "Maharashtra"), ("Chennai", "Tamil Nadu"), ("Jaipur", "Rajasthan")],
               streets=["MG Road", "Station Road", "Nehru Nagar", "Gandhi Marg"]),
    "IR": dict(country="Iran", id=None, postcode=(10000, 99999), phone="0##-########", cell="09##-###-####",
               male=[("محمدطاها", "mhmdth"), ("امیرحسین", "amyrhsyn"), ("علی", "aly"), ("پارسا", "parsa"),
                     ("آرش", "arsh")],
               female=[("زهرا", "zhra"), ("نازنین", "naznyn"), ("مریم", "mrym"), ("یاسمن", "yasmn"),
                       ("ترانه", "tranh")],
               last=[("کریمی", "krymy"), ("محمدی", "mhmdy"), ("رضایی", "rzayy"), ("موسوی", "mousvy"),
                     ("کامروا", "kamrva")],
               places=[("تهران", "تهران"), ("شیراز", "فارس"), ("اصفهان", "اصفهان")],
               streets=["شهید رجایی", "آزادی", "امام خمینی", "ولیعصر"]),
    "MX": dict(country="Mexico", id=("NSS", "## ## ## #### #"), postcode=(10000, 99999), phone="(6##) ### ####",
               cell="(6##) ### ####", male=_latin("Santiago", "Mateo", "Diego", "Emiliano", "Sebastián"),
               female=_latin("Ximena", "Valentina", "Regina", "María José", "Renata"),
               last=[("Hernández", "hernandez"), ("García", "garcia"), ("Martínez", "martinez"),
                     ("Rodríguez", "rodriguez"), ("Peña", "pena")],
               places=[("Guadalajara", "Jalisco"), ("Mérida", "Yucatán"), ("Puebla", "Puebla")],
               streets=["Calle Juárez", "Avenida Hidalgo", "Privada Morelos", "Callejón Zaragoza"]),
    "NL": dict(country="Netherlands", id=("BSN", "########"), postcode="#### @@", phone="(0##) #######",
               cell="(06) ########", male=_latin("Daan", "Sem", "Lucas", "Bram", "Thijs"),
               female=_latin("Emma", "Julia", "Tess", "Sanne", "Fenna"),
               last=[("de Jong", "dejong"), ("Jansen", "jansen"), ("van den Berg", "vandenberg"),
                     ("Bakker", "bakker"), ("Visser", "visser")],
               places=[("Amsterdam", "Noord-Holland"), ("Utrecht", "Utrecht"), ("Groningen", "Groningen")],
               streets=["Kerkstraat", "Dorpsstraat", "Molenweg", "Stationsplein"]),
    "NO": dict(country="Norway", id=("FN", "###########"), postcode=(1000, 9999), phone="########",
               cell="4#######", male=_latin("Jakob", "Emil", "Filip", "Henrik", "Sander"),
               female=[("Nora", "nora"), ("Emma", "emma"), ("Ingrid", "ingrid"), ("Sølvi", "solvi"),
                       ("Maja", "maja")],
               last=[("Hansen", "hansen"), ("Johansen", "johansen"), ("Olsen", "olsen"), ("Bråten", "braten"),
                     ("Haugen", "haugen")],
               places=[("Oslo", "Oslo"), ("Bergen", "Vestland"), ("Tromsø", "Troms")],
               streets=["Storgata", "Kirkeveien", "Skogveien", "Fjordgata"]),
    "NZ": dict(country="New Zealand", id=None, postcode=(1000, 9999), phone="(###)-###-####", cell="(###)-###-####",
               male=_latin("Oliver", "Nikau", "Hunter", "Mason", "Tama"),
               female=_latin("Charlotte", "Aroha", "Isla", "Harper", "Mere"),
               last=_latin("Wilson", "Thompson", "Ngata", "Walker", "Clarke"),
               places=[("Auckland", "Auckland"), ("Wellington", "Wellington"), ("Dunedin", "Otago")],
               streets=["Tuam Street", "Great North Road", "Karangahape Road", "Queen Street"]),
    "RS": dict(country="Serbia", id=("SID", "#########"), postcode=(10000, 39999), phone="0##-####-###",
               cell="06#-####-###", male=[("Милош", "milos"), ("Никола", "nikola"), ("Стефан", "stefan"),
                                         ("Лазар", "lazar"), ("Душан", "dusan")],
               female=[("Јелена", "jelena"), ("Милица", "milica"), ("Ана", "ana"), ("Тамара", "tamara"),
                       ("Драгана", "dragana")],
               last=[("Јовановић", "jovanovic"), ("Петровић", "petrovic"), ("Николић", "nikolic"),
                     ("Марковић", "markovic"), ("Ђорђевић", "dordevic")],
               places=[("Београд", "Централна Србија"), ("Нови Сад", "Војводина"), ("Ниш", "Нишавски")],
               streets=["Краља Петра", "Булевар ослобођења", "Његошева", "Цара Душана"]),
    "TR": dict(country="Turkey", id=None, postcode=(10000, 81999), phone="(###)-###-####", cell="(###)-###-####",
               male=[("Mehmet", "mehmet"), ("Mustafa", "mustafa"), ("Çağan", "cagan"), ("Ömer", "omer"),
                     ("Yiğit", "yigit")],
               female=[("Zeynep", "zeynep"), ("Elif", "elif"), ("Şule", "sule"), ("Ayşe", "ayse"),
                       ("Gülsüm", "gulsum")],
               last=[("Yılmaz", "yilmaz"), ("Kaya", "kaya"), ("Öztürk", "ozturk"), ("Çelik", "celik"),
                     ("Şahin", "sahin")],
               places=[("İstanbul", "İstanbul"), ("Ankara", "Ankara"), ("İzmir", "İzmir")],
               streets=["Atatürk Sk", "Istiklal Cd", "Bağdat Cd", "Kushimoto Sk"]),
    "UA": dict(country="Ukraine", id=None, postcode=(10000, 99999), phone="(0##) ###-####", cell="(09#) ###-####",
               male=[("Олександр", "oleksandr"), ("Андрій", "andriy"), ("Богдан", "bogdan"), ("Тарас", "taras"),
                     ("Ярослав", "yaroslav")],
               female=[("Олена", "olena"), ("Ірина", "irina"), ("Оксана", "oksana"), ("Соломія", "solomiya"),
                       ("Христина", "hristina")],
               last=[("Шевченко", "shevchenko"), ("Коваленко", "kovalenko"), ("Бондаренко", "bondarenko"),
                     ("Ткаченко", "tkachenko"), ("Мельник", "melnik")],
               places=[("Київ", "Київська"), ("Львів", "Львівська"), ("Одеса", "Одеська")],
               streets=["Хрещатик", "Шевченка", "Лесі Українки", "Грушевського"]),
    "US": dict(country="United States", id=("SSN", "###-##-####"), postcode=(10000, 99999), phone="(###) ###-####",
               cell="(###) ###-####", male=_latin("James", "Michael", "Ethan", "Logan", "Wyatt"),
               female=_latin("Jennie", "Emily", "Madison", "Abigail", "Harper"),
               last=_latin("Nichols", "Johnson", "Miller", "Davis", "Wilson"),
               places=[("Billings", "Montana"), ("Austin", "Texas"), ("Fresno", "California")],
               streets=["Valwood Pkwy", "Pecan Acres Ln", "Hickory Creek Dr", "W Sherman Dr"]),
}
ALL_NATS = tuple(NATIONALITIES)
_FRENCH_TITLES = {"FR", "CH"}

TIMEZONES = [
    ("-12:00", "Eniwetok, Kwajalein"), ("-11:00", "Midway Island, Samoa"), ("-10:00", "Hawaii"),
    ("-9:00", "Alaska"), ("-8:00", "Pacific Time (US & Canada)"), ("-7:00", "Mountain Time (US & Canada)"),
    ("-6:00", "Central Time (US & Canada), Mexico City"), ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    ("-4:00", "Atlantic Time (Canada), Caracas, La Paz"), ("-3:30", "Newfoundland"),
    ("-3:00", "Brazil, Buenos Aires, Georgetown"), ("-2:00", "Mid-Atlantic"), ("-1:00", "Azores, Cape Verde Islands"),
    ("0:00", "Western Europe Time, London, Lisbon, Casablanca"), ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    ("+2:00", "Kaliningrad, South Africa"), ("+3:00", "Baghdad, Riyadh, Moscow, St. Petersburg"),
    ("+3:30", "Tehran"), ("+4:00", "Abu Dhabi, Muscat, Baku, Tbilisi"), ("+4:30", "Kabul"),
    ("+5:00", "Ekaterinburg, Islamabad, Karachi, Tashkent"), ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    ("+5:45", "Kathmandu"), ("+6:00", "Almaty, Dhaka, Colombo"), ("+7:00", "Bangkok, Hanoi, Jakarta"),
    ("+8:00", "Beijing, Perth, Singapore, Hong Kong"), ("+9:00", "Tokyo, Seoul, Osaka, Sapporo, Yakutsk"),
    ("+9:30", "Adelaide, Darwin"), ("+10:00", "Eastern Australia, Guam, Vladivostok"),
    ("+11:00", "Magadan, Solomon Islands, New Caledonia"), ("+12:00", "Auckland, Wellington, Fiji, Kamchatka"),
]
_ADJECTIVES = ("yellow", "happy", "silver", "tiny", "lazy", "brown", "purple", "heavy", "crazy", "angry",
               "beautiful", "black", "blue", "golden", "green", "orange", "red", "sad", "white", "ticklish")
_ANIMALS = ("peacock", "tiger", "rabbit", "bear", "butterfly", "cat", "dog", "duck", "elephant", "fish", "frog",
            "goose", "gorilla", "koala", "leopard", "lion", "mouse", "ostrich", "panda", "swan", "wolf", "zebra")
_PASSWORDS = ("addison", "trouble", "sunshine", "qwerty", "dragon", "monkey", "letmein", "shadow", "master",
              "jennifer", "hunter", "buster", "soccer", "harley", "batman", "andrew", "tigger", "charlie")
_SALT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


# --- Generation ------------------------------------------------------------------

def _fill(rng: random.Random, pattern: str) -> str:
    """Expand a format: '#' becomes a digit, '@' an upper-case letter (ids, phones, postcodes)."""
    return "".join(
        str(rng.randrange(10)) if ch == "#" else rng.choice(_UPPER) if ch == "@" else ch for ch in pattern
    )


def _iso_millis(ms: int) -> str:
    """randomuser.me's timestamp format: ISO 8601, milliseconds, 'Z'."""
    dt = datetime.fromtimestamp(ms // 1000, tz=timezone.utc)
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def _dated(rng: random.Random, lo_hi: tuple[int, int]) -> dict[str, Any]:
    """A {"date", "age"} pair; age in whole years before REFERENCE_DATE."""
    ms = rng.randrange(*lo_hi)
    return {"date": _iso_millis(ms), "age": int((_REFERENCE_MS - ms) // _MS_PER_YEAR)}


def make_user(rng: random.Random, nat: str) -> dict[str, Any]:
    """One user of nationality `nat`, shaped exactly like a randomuser.me v1.4 result."""
    data = NATIONALITIES[nat]
    gender = "male" if rng.random() < 0.5 else "female"
    first, first_latin = rng.choice(data[gender])
    last, last_latin = rng.choice(data["last"])
    if nat in _FRENCH_TITLES:
        title = "Monsieur" if gender == "male" else rng.choice(("Madame", "Mademoiselle"))
    else:
        title = "Mr" if gender == "male" else rng.choice(("Ms", "Miss", "Mrs", "Madame"))
    city, state = rng.choice(data["places"])
    postcode_spec = data["postcode"]
    postcode: int | str = rng.randint(*postcode_spec) if isinstance(postcode_spec, tuple) else _fill(rng, postcode_spec)
    offset, description = rng.choice(TIMEZONES)
    id_spec = data["id"]
    national_id = {"name": "", "value": None} if id_spec is None else {"name": id_spec[0], "value": _fill(rng, id_spec[1])}
    password = rng.choice(_PASSWORDS) if rng.random() < 0.8 else f"{rng.choice(_PASSWORDS)}{rng.randint(1, 999)}"
    salt = "".join(rng.choice(_SALT_CHARS) for _ in range(8))
    salted = (password + salt).encode()
    picture_no = rng.randrange(100)
    folder = "men" if gender == "male" else "women"
    return {
        "gender": gender,
        "name": {"title": title, "first": first, "last": last},
        "location": {
            "street": {"number": rng.randint(1, 9999), "name": rng.choice(data["streets"])},
            "city": city,
            "state": state,
            "country": data["country"],
            "postcode": postcode,
            "coordinates": {"latitude": f"{rng.uniform(-90, 90):.4f}", "longitude": f"{rng.uniform(-180, 180):.4f}"},
            "timezone": {"offset": offset, "description": description},
        },
        "email": f"{first_latin}.{last_latin}@example.com".lower().replace(" ", ""),
        "login": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "username": f"{rng.choice(_ADJECTIVES)}{rng.choice(_ANIMALS)}{rng.randint(100, 999)}",
            "password": password,
            "salt": salt,
            "md5": hashlib.md5(salted).hexdigest(),
            "sha1": hashlib.sha1(salted).hexdigest(),
            "sha256": hashlib.sha256(salted).hexdigest(),
        },
        "dob": _dated(rng, _DOB_RANGE_MS),
        "registered": _dated(rng, _REGISTERED_RANGE_MS),
        "phone": _fill(rng, data["phone"]),
        "cell": _fill(rng, data["cell"]),
        "id": national_id,
        "picture": {
            "large": f"https://randomuser.me/api/portraits/{folder}/{picture_no}.jpg",
            "medium": f"https://randomuser.me/api/portraits/med/{folder}/{picture_no}.jpg",
            "thumbnail": f"https://randomuser.me/api/portraits/thumb/{folder}/{picture_no}.jpg",
        },
        "nat": nat,
    }


# Each corruption is something a real upstream has been seen to do: drop a
# field, change a type, send an unparseable value. The producer must route all
# of them to the dead-letter topic, never crash and never publish them.
def _drop(path: tuple[str, ...]):
    def corrupt(user: dict[str, Any], rng: random.Random) -> None:
        node = user
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return corrupt


def _set(path: tuple[str, ...], value: Any):
    def corrupt(user: dict[str, Any], rng: random.Random) -> None:
        node = user
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return corrupt


CORRUPTIONS = (
    _drop(("login",)),
    _drop(("email",)),
    _drop(("location", "coordinates")),
    _drop(("dob", "date")),
    _set(("location", "coordinates", "latitude"), "not-a-number"),
    _set(("location", "coordinates", "longitude"), "512.5"),
    _set(("dob", "date"), "20th of July"),
    _set(("location", "street", "number"), "12b"),
    _set(("name",), None),
    _set(("email",), 42),
    _set(("login", "uuid"), "not-a-uuid"),
    _set(("location", "postcode"), None),
    _set(("registered",), "2010-01-01"),
)


def generate(seed: str, page: int, results: int, nats: tuple[str, ...], malformed: float = 0.0) -> list[dict]:
    """The users of one page: a pure function of its arguments (that is the replay guarantee)."""
    rng = random.Random(f"{seed}|{page}|{results}|{','.join(nats)}")
    users = [make_user(rng, rng.choice(nats)) for _ in range(results)]
    if malformed > 0:
        # A separate stream, so the corruption rate does not change the users themselves.
        bad_rng = random.Random(f"{seed}|{page}|{results}|{','.join(nats)}|malformed")
        for user in users:
            if bad_rng.random() < malformed:
                bad_rng.choice(CORRUPTIONS)(user, bad_rng)
    return users


# --- HTTP ----------------------------------------------------------------------

class BadRequest(ValueError):
    """A query parameter randomuser.me would reject; answered as {"error": ...}."""


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int | None = None) -> int:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _float_param(query: dict[str, list[str]], name: str, default: float, lo: float, hi: float) -> float:
    raw = _one(query, name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _list_param(query: dict[str, list[str]], name: str) -> list[str]:
    raw = _one(query, name, "") or ""
    return [item.strip() for item in raw.split(",") if item.strip()]


class DataSource:
    """The service's state: the default malformed rate and the failure-injection counters."""

    def __init__(self, malformed_rate: float = 0.0) -> None:
        self.malformed_rate = malformed_rate
        self.injected_failures = 0  # total injected failures served (tests read it)
        self._failures: dict[tuple, int] = {}
        self._lock = threading.Lock()

    def injected_failure(self, key: tuple, times: int | None) -> bool:
        """True while identical requests (same key) have failed fewer than `times` times."""
        with self._lock:
            count = self._failures.get(key, 0)
            if times is not None and count >= times:
                return False
            self._failures[key] = count + 1
            self.injected_failures += 1
            return True

    def respond(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], dict[str, Any]]:
        """(status, extra headers, JSON body) for GET /api/ with this query."""
        try:
            results = _int_param(query, "results", 1, 1)
            if results > MAX_RESULTS:
                raise BadRequest(f"results must be at most {MAX_RESULTS}, got {results}")
            page = _int_param(query, "page", 1, 1)
            seed = _one(query, "seed") or secrets.token_hex(8)
            nats = tuple(n.upper() for n in _list_param(query, "nat")) or ALL_NATS
            unknown = [n for n in nats if n not in NATIONALITIES]
            if unknown:
                raise BadRequest(f"unknown nationality {','.join(unknown)}; known: {','.join(ALL_NATS)}")
            fmt = _one(query, "format", "json")
            if fmt != "json":
                raise BadRequest(f"format {fmt!r} is not supported here; only json")
            malformed = _float_param(query, "malformed", self.malformed_rate, 0.0, 1.0)
            delay = _float_param(query, "delay", 0.0, 0.0, 60.0)
            fail = _one(query, "fail")
            fail_times = _int_param(query, "fail_times", -1, 0)
            fail_page = _int_param(query, "fail_page", 0, 1)
            retry_after = _one(query, "retry_after")
        except BadRequest as exc:
            return 200, {}, {"error": str(exc)}

        if delay:
            time.sleep(delay)
        if fail and (not fail_page or fail_page == page):
            key = (seed, page, results, nats, fail)
            if self.injected_failure(key, None if fail_times < 0 else fail_times):
                headers = {"Retry-After": retry_after} if retry_after else {}
                if fail == "error":
                    return 200, headers, {"error": f"injected error (fail=error, seed={seed}, page={page})"}
                try:
                    status = HTTPStatus(int(fail))
                except ValueError:
                    return 200, {}, {"error": f"fail must be an HTTP status code or 'error', got {fail!r}"}
                return status.value, headers, {"error": f"injected failure {status.value} {status.phrase}"}

        users = generate(seed, page, results, nats, malformed)
        included = {f.lower() for f in _list_param(query, "inc")} or set(FIELDS)
        included -= {f.lower() for f in _list_param(query, "exc")}
        if included != set(FIELDS):
            users = [{k: v for k, v in user.items() if k in included} for user in users]
        return 200, {}, {"results": users, "info": {"seed": seed, "results": results, "page": page, "version": VERSION}}


def make_handler(source: DataSource) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "userstream-datasource/1.4"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            path = url.path.rstrip("/")
            if path in ("/api", "/api/1.4"):
                status, headers, body = source.respond(parse_qs(url.query, keep_blank_values=True))
            elif path == "/health":
                status, headers, body = 200, {}, {"status": "ok"}
            else:
                status, headers, body = 404, {}, {"error": f"not found: {url.path}; use /api/"}
            payload = json.dumps(body, ensure_ascii=False).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # The client gave up first (its timeout, e.g. with `delay=`); it already knows.
                self.close_connection = True
                self.log_message("client went away before the response was written")

        def log_message(self, fmt: str, *args: Any) -> None:
            if self.server.verbose:  # type: ignore[attr-defined]
                super().log_message(fmt, *args)

    return Handler


def make_server(host: str = "127.0.0.1", port: int = 8765, malformed_rate: float = 0.0,
                verbose: bool = False) -> ThreadingHTTPServer:
    """A ready-to-serve server (port 0 picks a free port: `server.server_address[1]`)."""
    source = DataSource(malformed_rate)
    server = ThreadingHTTPServer((host, port), make_handler(source))
    server.daemon_threads = True
    server.source = source  # type: ignore[attr-defined]
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standin.randomuser", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--malformed-rate", type=float,
                        default=float(os.environ.get("DATASOURCE_MALFORMED_RATE", "0") or 0),
                        help="default fraction of corrupted records (query param `malformed` overrides)")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if not 0.0 <= args.malformed_rate <= 1.0:
        parser.error("--malformed-rate must be between 0 and 1")
    try:
        server = make_server(args.host, args.port, args.malformed_rate, args.verbose)
    except OSError as exc:
        print(f"datasource: cannot listen on {args.host}:{args.port}: {exc}. "
              f"Is another copy running? Pick another --port.", file=sys.stderr)
        return 1
    print(f"datasource: serving randomuser.me v{VERSION}-compatible API on "
          f"http://{args.host}:{server.server_address[1]}/api/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
