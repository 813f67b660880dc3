"""Built-in vocabularies and pure generators for `seed_demo` (no ORM, no I/O).

Everything a demo profile is made of — names from several cultures, e-mail
addresses, valid E.164 phone numbers, dates of birth, devices, custom
properties — comes from here, so the generators can be tested on their own.
"""

from __future__ import annotations

import datetime as dt
import random
import unicodedata
from dataclasses import dataclass

# --- people -------------------------------------------------------------------------


@dataclass(frozen=True)
class Culture:
    female: tuple[str, ...]
    male: tuple[str, ...]
    last: tuple[str, ...]


CULTURES: dict[str, Culture] = {
    "anglo": Culture(
        female=("Olivia", "Emma", "Charlotte", "Amelia", "Sophia", "Grace", "Chloe", "Emily",
                "Hannah", "Abigail", "Madison", "Zoë", "Megan", "Lucy", "Ruby"),
        male=("Liam", "Noah", "Oliver", "James", "William", "Benjamin", "Lucas", "Henry",
              "Jack", "Thomas", "Ethan", "Samuel", "Daniel", "Owen", "George"),
        last=("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson",
              "Taylor", "Anderson", "Thomas", "Moore", "Clarke", "O'Brien", "Walker", "Wright",
              "Evans", "Hughes", "Robinson", "Bennett"),
    ),
    "hispanic": Culture(
        female=("Sofía", "Valentina", "Camila", "Lucía", "María", "Isabella", "Daniela",
                "Gabriela", "Carmen", "Paula", "Ximena", "Renata"),
        male=("Mateo", "Santiago", "Sebastián", "Diego", "Alejandro", "Javier", "Carlos",
              "José", "Miguel", "Andrés", "Pablo", "Emiliano"),
        last=("García", "Martínez", "Rodríguez", "López", "Hernández", "González", "Pérez",
              "Sánchez", "Ramírez", "Torres", "Flores", "Rivera", "Gómez", "Díaz", "Morales",
              "Ortiz"),
    ),
    "indian": Culture(
        female=("Aanya", "Diya", "Ananya", "Priya", "Kavya", "Isha", "Meera", "Riya", "Sneha",
                "Pooja", "Lakshmi", "Nandini", "Shreya"),
        male=("Aarav", "Vihaan", "Arjun", "Rohan", "Rahul", "Vikram", "Aditya", "Karthik",
              "Siddharth", "Ishaan", "Ravi", "Sanjay", "Amit"),
        last=("Sharma", "Patel", "Reddy", "Iyer", "Singh", "Gupta", "Kumar", "Nair", "Mehta",
              "Rao", "Chatterjee", "Desai", "Joshi", "Menon", "Kapoor", "Verma"),
    ),
    "german": Culture(
        female=("Mia", "Emilia", "Hanna", "Lena", "Lea", "Marie", "Greta", "Frieda", "Jana",
                "Katharina", "Anja", "Sabine"),
        male=("Felix", "Leon", "Paul", "Maximilian", "Jonas", "Lukas", "Elias", "Moritz",
              "Stefan", "Jürgen", "Matthias", "Tobias"),
        last=("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
              "Schulz", "Hoffmann", "Koch", "Bauer", "Richter", "Klein", "Wolf", "Schröder"),
    ),
    "brazilian": Culture(
        female=("Ana", "Beatriz", "Larissa", "Juliana", "Fernanda", "Mariana", "Letícia",
                "Bruna", "Luana", "Aline", "Thaís", "Rafaela"),
        male=("João", "Pedro", "Gabriel", "Lucas", "Rafael", "Gustavo", "Felipe", "Thiago",
              "Bruno", "Vinícius", "Eduardo", "Leonardo"),
        last=("Silva", "Santos", "Oliveira", "Souza", "Lima", "Pereira", "Ferreira", "Costa",
              "Rodrigues", "Almeida", "Nascimento", "Carvalho", "Araújo", "Ribeiro", "Barbosa"),
    ),
    "nigerian": Culture(
        female=("Chiamaka", "Ngozi", "Adaeze", "Funmilayo", "Aisha", "Amara", "Folake",
                "Yetunde", "Chioma", "Zainab", "Ifeoma", "Temitope"),
        male=("Chinedu", "Emeka", "Oluwaseun", "Tunde", "Ibrahim", "Obinna", "Segun", "Kelechi",
              "Uche", "Babajide", "Musa", "Femi"),
        last=("Okafor", "Adeyemi", "Okonkwo", "Balogun", "Eze", "Nwosu", "Abubakar", "Olawale",
              "Adebayo", "Obi", "Ogunleye", "Ibekwe", "Bello", "Okoro"),
    ),
    "east_asian": Culture(
        female=("Mei", "Xiu", "Yuna", "Sakura", "Hana", "Ji-woo", "Lan", "Aiko", "Min-seo",
                "Yan", "Haruka", "Lin"),
        male=("Wei", "Jun", "Hiroshi", "Kenji", "Min-jun", "Haoran", "Takeshi", "Jian",
              "Seo-jun", "Ren", "Yuki", "Chen"),
        last=("Wang", "Li", "Zhang", "Liu", "Chen", "Tanaka", "Suzuki", "Sato", "Kim", "Park",
              "Lee", "Nguyen", "Huang", "Watanabe", "Choi", "Yamamoto"),
    ),
    "arabic": Culture(
        female=("Fatima", "Layla", "Mariam", "Noor", "Yasmin", "Huda", "Salma", "Rania", "Amira",
                "Hana", "Dalia"),
        male=("Omar", "Youssef", "Ahmed", "Karim", "Hassan", "Ali", "Khalid", "Tariq", "Samir",
              "Nabil", "Rami"),
        last=("Haddad", "Khalil", "Nasser", "Mansour", "Farouk", "Saleh", "Aziz", "Rahman",
              "Hamdan", "Qureshi", "El-Amin", "Darwish"),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Country:
    code: str
    weight: int
    cultures: tuple[str, ...]  # the first is the most common there
    languages: tuple[str, ...]
    time_zones: tuple[str, ...]
    cities: tuple[str, ...]


COUNTRIES: tuple[Country, ...] = (
    Country("US", 30, ("anglo", "hispanic", "east_asian", "indian"), ("English", "Spanish"),
            ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
            ("New York", "San Francisco", "Chicago", "Austin", "Seattle", "Boston")),
    Country("GB", 12, ("anglo", "indian", "arabic"), ("English",), ("Europe/London",),
            ("London", "Manchester", "Birmingham", "Leeds", "Glasgow")),
    Country("IN", 20, ("indian",), ("Hindi", "English", "Tamil", "Marathi"), ("Asia/Kolkata",),
            ("Mumbai", "Bengaluru", "Delhi", "Chennai", "Pune", "Hyderabad")),
    Country("DE", 8, ("german", "arabic"), ("German",), ("Europe/Berlin",),
            ("Berlin", "Munich", "Hamburg", "Cologne", "Frankfurt")),
    Country("BR", 10, ("brazilian",), ("Portuguese",), ("America/Sao_Paulo",),
            ("São Paulo", "Rio de Janeiro", "Belo Horizonte", "Curitiba")),
    Country("MX", 7, ("hispanic",), ("Spanish",), ("America/Mexico_City",),
            ("Mexico City", "Guadalajara", "Monterrey", "Puebla")),
    Country("ES", 5, ("hispanic",), ("Spanish", "Catalan"), ("Europe/Madrid",),
            ("Madrid", "Barcelona", "Valencia", "Seville")),
    Country("NG", 8, ("nigerian",), ("English", "Yoruba", "Igbo", "Hausa"), ("Africa/Lagos",),
            ("Lagos", "Abuja", "Ibadan", "Port Harcourt")),
)  # fmt: skip

# Phone numbers: a fixed, valid mobile prefix per country followed by seven
# digits. The seven digits are a bijection of the profile id (an affine map
# modulo 10^7), so two profiles never get the same number, however often the
# command runs, as long as profile ids stay below 10^7 (above that: no phone).
PHONE_PREFIXES = {
    "GB": "+44751",  # 0751 xxxxxxx: UK mobile
    "IN": "+91981",  # 981 xxxxxxx: Indian mobile
    "DE": "+491511",  # 01511 xxxxxxx: German mobile (Telekom)
    "BR": "+551198",  # (11) 98xxx-xxxx: São Paulo mobile
    "MX": "+52551",  # 55 1xxx xxxx: Mexico City
    "ES": "+3461",  # 61x xxx xxx: Spanish mobile
    "NG": "+234803",  # 0803 xxx xxxx: Nigerian mobile
}
US_AREA_CODES = ("212", "312", "415", "617", "206", "303", "404", "512", "702", "713")
PHONE_ID_LIMIT = 10**7
_PHONE_MULTIPLIER = 3_967_411  # odd and not a multiple of 5: invertible modulo 10^7
_PHONE_OFFSET = 5_320_867


def phone_for(profile_id: int, country: str) -> str:
    """A valid, unique E.164 number for the profile (raises beyond PHONE_ID_LIMIT)."""
    if not 0 < profile_id < PHONE_ID_LIMIT:
        raise ValueError("profile id outside the phone number space")
    digits = f"{(profile_id * _PHONE_MULTIPLIER + _PHONE_OFFSET) % PHONE_ID_LIMIT:07d}"
    if country == "US":
        # +1 <area> 2xx xxxx: a real-looking exchange, never the fictional 555.
        return f"+1{US_AREA_CODES[int(digits[0])]}2{digits[1:]}"
    return PHONE_PREFIXES[country] + digits


def ascii_slug(text: str) -> str:
    """'Sofía O'Brien' -> 'sofiaobrien' (for e-mail local parts)."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


EMAIL_DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")


def email_for(first: str, last: str, profile_id: int, style: int) -> str:
    """Unique because the profile id is part of it; reserved example domains only."""
    first_slug, last_slug = ascii_slug(first) or "user", ascii_slug(last) or "demo"
    domain = EMAIL_DOMAINS[style % len(EMAIL_DOMAINS)]
    if style % 3 == 0:
        local = f"{first_slug}.{last_slug}{profile_id}"
    elif style % 3 == 1:
        local = f"{first_slug[0]}{last_slug}{profile_id}"
    else:
        local = f"{first_slug}_{profile_id}"
    return f"{local}@{domain}"


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _leap_birth_years(today: dt.date) -> list[int]:
    """Years whose 29 February gives an age between 13 and 80 today."""
    return [
        year
        for year in range(today.year - 81, today.year - 12)
        if _is_leap(year) and 13 <= _age(dt.date(year, 2, 29), today) <= 80
    ]


def _age(dob: dt.date, day: dt.date) -> int:
    return day.year - dob.year - ((day.month, day.day) < (dob.month, dob.day))


def birth_date(rng: random.Random, today: dt.date) -> dt.date:
    """A date of birth for an age between 13 and 80; about 1 in 200 is a 29 February."""
    if rng.random() < 0.005:
        return dt.date(rng.choice(_leap_birth_years(today)), 2, 29)
    age = rng.randint(13, 80)
    if (today.month, today.day) == (2, 29):
        latest = dt.date(today.year - age, 2, 28)
    else:
        latest = today.replace(year=today.year - age)  # the day they turned `age`
    return latest - dt.timedelta(days=rng.randrange(365))


# --- devices ------------------------------------------------------------------------

DEVICE_MODELS = {
    "Android": (("Samsung", "Galaxy S23"), ("Samsung", "Galaxy A54"), ("Google", "Pixel 8"),
                ("Xiaomi", "Redmi Note 12"), ("OnePlus", "11"), ("Motorola", "Moto G84")),
    "iOS": (("Apple", "iPhone 15"), ("Apple", "iPhone 14 Pro"), ("Apple", "iPhone 13"),
            ("Apple", "iPad Air")),
    "Web": (("", "Chrome 124"), ("", "Safari 17"), ("", "Firefox 125"), ("", "Edge 124")),
}  # fmt: skip
PLATFORMS = ("Android", "Android", "Android", "iOS", "iOS", "Web")


def device_object_id(rng: random.Random, platform: str) -> str:
    """CleverTap-style ids: Android/Web `__` + 32 hex, iOS `-` + 32 hex."""
    hex32 = f"{rng.getrandbits(128):032x}"
    return ("-" if platform == "iOS" else "__") + hex32


_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def push_token(rng: random.Random, platform: str) -> str:
    """FCM-, APNs- or web-push-looking tokens (unique with overwhelming probability)."""
    if platform == "iOS":
        return f"{rng.getrandbits(256):064x}"
    body = "".join(rng.choices(_TOKEN_ALPHABET, k=140))
    if platform == "Android":
        return f"{''.join(rng.choices(_TOKEN_ALPHABET, k=22))}:APA91b{body}"
    return f"https://fcm.googleapis.com/fcm/send/{body[:40]}"


# --- custom properties --------------------------------------------------------------

CUSTOMER_TYPES = ("Platinum", "Gold", "Gold", "Silver", "Silver", "Silver", "Bronze", "Bronze",
                  "Bronze", "Bronze")  # fmt: skip
INTERESTS = ("Sports", "Music", "Movies", "Travel", "Cooking", "Fitness", "Gaming", "Fashion",
             "Technology", "Books", "Photography", "Gardening", "Cricket", "Football", "Yoga",
             "Investing")  # fmt: skip

# (scope, name, type) rows written to PropertyDefinition.
PROFILE_PROPERTY_TYPES = {
    "Customer Type": "string",
    "Score": "number",
    "Premium": "boolean",
    "Signup Date": "date",
    "Interests": "list",
    "ct_is_test_user": "string",
}
EVENT_PROPERTY_TYPES = {
    "Amount": "number",
    "Payment Mode": "string",
    "Product": "string",
    "Category": "string",
    "Price": "number",
    "Quantity": "number",
    "Query": "string",
    "Results": "number",
    "Title": "string",
    "Duration": "number",
    "Completed": "boolean",
    "plan": "string",
    "Billing": "string",
    "Screen": "string",
    "Code": "string",
    "Discount": "number",
    "Rating": "number",
    "Channel": "string",
    "Minutes": "number",
    "App Version": "string",
    "Network": "string",
}


def iso_utc(moment: dt.datetime) -> str:
    """The stored form of date properties (profiles.properties.format_date)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def custom_properties(
    rng: random.Random, signup: dt.datetime, *, identified: bool
) -> dict[str, object]:
    """A profile's custom properties (identified people have more)."""
    custom: dict[str, object] = {}
    if identified:
        custom["Customer Type"] = rng.choice(CUSTOMER_TYPES)
        custom["Score"] = (
            round(rng.uniform(0, 100), 1) if rng.random() < 0.8 else rng.randint(0, 1000)
        )
        custom["Premium"] = rng.random() < 0.25
        custom["Signup Date"] = iso_utc(signup)
    if rng.random() < (0.7 if identified else 0.2):
        custom["Interests"] = rng.sample(INTERESTS, rng.randint(1, 4))
    return custom


# --- events -------------------------------------------------------------------------

# Name -> relative frequency. App Launched is a reserved (system) name: the
# SDK records it, uploads may not, so the seed stores it as an SDK event.
EVENT_WEIGHTS = {
    "App Launched": 16,
    "Product Viewed": 22,
    "Screen Viewed": 12,
    "Searched": 10,
    "Added To Cart": 8,
    "Video Watched": 8,
    "Article Read": 5,
    "Added To Wishlist": 4,
    "Charged": 5,
    "Rated": 3,
    "Shared": 3,
    "Coupon Applied": 2,
    "Plan Purchased": 2,
}
EVENT_NAMES = tuple(EVENT_WEIGHTS)
WEIGHTED_EVENT_NAMES = [name for name, weight in EVENT_WEIGHTS.items() for _ in range(weight)]

PRODUCTS = (
    ("Running Shoes", "Footwear", 89.99), ("Trail Sneakers", "Footwear", 119.0),
    ("Leather Boots", "Footwear", 149.5), ("Denim Jacket", "Apparel", 79.0),
    ("Cotton T-Shirt", "Apparel", 19.99), ("Wool Sweater", "Apparel", 64.0),
    ("Wireless Earbuds", "Electronics", 129.0), ("Smart Watch", "Electronics", 249.0),
    ("Bluetooth Speaker", "Electronics", 59.99), ("Phone Case", "Accessories", 14.99),
    ("Backpack", "Accessories", 49.0), ("Sunglasses", "Accessories", 99.0),
    ("Coffee Beans 1kg", "Grocery", 24.5), ("Green Tea", "Grocery", 8.75),
    ("Yoga Mat", "Sports", 35.0), ("Football", "Sports", 29.99),
    ("Cricket Bat", "Sports", 74.0), ("Cookbook", "Books", 27.0),
    ("Mystery Novel", "Books", 12.99), ("Desk Lamp", "Home", 39.0),
)  # fmt: skip
SEARCH_TERMS = ("shoes", "headphones", "summer dress", "coffee", "yoga", "gift ideas", "laptop bag",
                "running", "sale", "kids toys", "phone charger", "cricket")  # fmt: skip
VIDEO_TITLES = ("Getting Started", "Summer Collection", "Workout in 10 Minutes", "Chef's Table",
                "Product Tour", "Behind the Scenes", "Customer Stories")  # fmt: skip
SCREENS = ("Home", "Offers", "Cart", "Profile", "Settings", "Order History", "Wishlist")
ARTICLES = ("10 Tips for Better Sleep", "How to Choose Running Shoes", "Budget Travel Guide",
            "Healthy Breakfast Ideas", "Our Sustainability Report")  # fmt: skip
PLANS = (("Basic", 4.99), ("Standard", 9.99), ("Premium", 14.99), ("Family", 19.99))
COUPONS = (("WELCOME10", 10), ("SAVE20", 20), ("FREESHIP", 5), ("FESTIVE15", 15))
PAYMENT_MODES = ("Credit Card", "Debit Card", "UPI", "PayPal", "Cash on Delivery", "Pix")
SHARE_CHANNELS = ("WhatsApp", "Email", "SMS", "Facebook", "Instagram")
APP_VERSIONS = ("5.8.2", "5.9.0", "6.0.1", "6.1.0")
NETWORKS = ("WiFi", "4G", "5G")
