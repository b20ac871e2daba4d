"""A generated, fictional news portal: the offline demo, and fixtures for tests and benchmarks.

Every page is built the way real CMSs build them, including the part that makes cleaning necessary: inside
the ``<article>`` container, next to the real paragraphs, sit a "Last updated at 08h35 on 09/04" stamp (its
digits differ per page), a "Follow us on WeChat" line, a share line, and "Related" / "Most read" blocks that
list other articles' headlines (some twice on one page). Trafilatura keeps most of that, so the site-level
cleaner has something to remove. Some articles also share one legitimate background paragraph (the history
of the rail line or the harbour), which is real content the cleaner must keep.

All text is invented from sentence templates with randomly filled slots (names, streets, numbers), so
distinct articles are not near-duplicates, and no sentence is reused between articles except the
background paragraphs. Output is deterministic for a given seed, and fast: about a thousand pages a second.

``build_site`` makes one site, ``build_many`` many (paths prefixed ``/s{i}``), and ``add_article`` appends a
new entry to a live site's feed (new ETag and Last-Modified), e.g. to simulate a second poll finding news.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

from worker.demo.server import Response, Route

# The site's clock: articles are published in the days before this instant (deterministic, unlike now()).
_EPOCH = datetime(2024, 4, 9, 9, 0, tzinfo=UTC)
_MIN_WORDS, _MAX_WORDS = 150, 500

# ------------------------------------------------------------------------------------------------------------
# Language packs: page chrome, vocabularies and sentence templates. Everything here is invented.
# ------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topic:
    """One beat of the paper: headline and sentence templates, plus slot vocabulary of its own."""

    key: str
    section: str
    tags: tuple[str, ...]
    titles: tuple[str, ...]
    sentences: tuple[str, ...]
    words: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A paragraph of real background that every article on this beat may carry verbatim.
    background: str | None = None


@dataclass(frozen=True)
class _Lang:
    """Everything language-specific: chrome strings, slot vocabulary, number formats, topics."""

    code: str
    site_name: str
    site_name_patterns: tuple[str, ...]
    tagline: str
    nav: tuple[str, ...]
    cookie: str
    cookie_ok: str
    byline: str
    updated: str
    follow: str
    share: str
    related: str
    most_read: str
    read_also: str
    latest: str
    newsletter: str
    footer: tuple[str, ...]
    months: tuple[str, ...]
    date_pattern: str
    town_parts: tuple[tuple[str, ...], tuple[str, ...]]
    site_words: Mapping[str, tuple[str, ...]]
    words: Mapping[str, tuple[str, ...]]
    generic: tuple[str, ...]
    topics: tuple[_Topic, ...]
    thousands: str
    money: Callable[[random.Random], str]
    small_money: Callable[[random.Random], str]


_EN = _Lang(
    code="en",
    site_name="The Harbour Gazette",
    site_name_patterns=("The {town} Gazette", "{town} Evening Post", "The {town} Herald", "{town} Courier",
                        "The {town} Chronicle", "{town} Daily News", "The {town} Observer"),
    tagline="News from the town, the harbour and the valley",
    nav=("Home", "Local", "Council", "Transport", "Sport", "Weather", "Schools", "Opinion", "Contact"),
    cookie="We use cookies to improve your experience and to show relevant adverts. "
           "You can change your choice at any time in the privacy settings.",
    cookie_ok="Accept all",
    byline="By {author}",
    updated="Last updated at {hh}h{mm} on {dd}/{mo}",
    follow="Follow us on WeChat: scan the QR code to get our top stories every morning.",
    share="Share this article: Facebook · X · WhatsApp · Email",
    related="Related",
    most_read="Most read",
    read_also="Read also",
    latest="Latest news",
    newsletter="Sign up for our free newsletter and never miss a story.",
    footer=("About us", "Advertise with us", "Privacy policy", "Terms of use", "Complaints"),
    months=("January", "February", "March", "April", "May", "June", "July", "August", "September",
            "October", "November", "December"),
    date_pattern="{d} {month} {y}",
    town_parts=(("Wen", "Ash", "Kil", "Salt", "Tres", "Harr", "Col", "Marr", "Pen", "Bram", "Ox", "Gull",
                 "Fen", "Crow", "Lan", "Thorn", "Rook", "Mill"),
                ("low", "combe", "brennan", "mere", "sock", "owby", "vennick", "wick", "varrow", "haven",
                 "ley", "stow", "holt", "mouth", "ford", "by")),
    site_words={
        "line": ("Kestrel Valley line", "Slate Coast line", "Ferry Branch line", "Upper Marsh line"),
        "club": ("{town} Athletic", "{town} Town", "{town} United", "{town} Rovers"),
        "ground": ("Quayside Ground", "Ropewalk Park", "Lantern Lane stadium", "Mill Meadow"),
        "station": ("{town} Central", "{town} Quay", "{town} Parkway"),
    },
    words={
        "first": ("Ada", "Tomas", "Mira", "Owen", "Lena", "Rafael", "Greta", "Idris", "Nell", "Caspar", "Hana",
                  "Felix", "Rosa", "Jonah", "Ines", "Milo", "Petra", "Anwar", "Elsie", "Bruno", "Signe",
                  "Dev", "Maud", "Kofi", "Lotte", "Emeka", "Vera", "Arlo", "Yusra", "Cormac"),
        "last": ("Penhale", "Ostrander", "Quill", "Marrow", "Tennant", "Halloway", "Brisk", "Caddick",
                 "Fenwick", "Lowther", "Mabry", "Okafor", "Varga", "Lindqvist", "Rourke", "Sallow",
                 "Trethewey", "Winslade", "Achterberg", "Dunmore", "Kellow", "Pryce", "Santangelo", "Thorne",
                 "Yelland", "Bramall", "Corrigan", "Esterhuizen", "Gilchrist", "Nakamura"),
        "street": ("Quay Street", "Mill Lane", "Chapel Row", "Tanner's Hill", "the Ropewalk", "Gull Terrace",
                   "Station Road", "Market Square", "Orchard Close", "Beacon Way", "Saltings Road",
                   "Church Walk", "Foundry Lane", "Ferry Steps", "Lantern Lane", "Kiln Road"),
        "district": ("the Old Town", "Eastcliff", "the Saltings", "Nether Ford", "Kiln Green", "Upper Marsh",
                     "Westgate", "Hollow Bank", "the harbour front", "Ropers Hill", "Little Brant"),
        "day": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
        "month": ("January", "February", "March", "April", "May", "June", "July", "August", "September",
                  "October", "November", "December"),
        "role": ("a retired teacher", "a local shopkeeper", "a parent of two", "the chair of the residents' "
                 "association", "a volunteer at the food bank", "a nurse who lives nearby",
                 "a councillor for the ward", "the owner of a guest house", "a taxi driver",
                 "a student at the college", "the vicar of St Aldhelm's", "a market trader"),
        "venue": ("town hall", "Corn Exchange", "community centre", "sailing club", "Methodist hall",
                  "college library", "old fire station", "Mechanics' Institute"),
        "verdict": ("welcome", "long overdue", "surprising", "disappointing", "sensible", "worrying",
                    "exciting", "a step forward"),
        "ordinal": ("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth"),
        "school": ("St Piran's School", "Eastcliff Academy", "Kiln Green Primary", "the Marsh School",
                   "Harbour Community College", "Westgate High School"),
    },
    generic=(
        "“We have been [asking|waiting|campaigning] for this for {n} years,” [said|says] {person}, {role}.",
        "{person}, {role}, [called the news|described the decision as] {verdict}.",
        "{person}, {role}, said the plans [were|looked] {verdict} but [asked for|wanted] more detail.",
        "A public meeting [will be held|is planned|takes place] at the {venue} on {day} at {clock}.",
        "[Further|More] details are [due to be published|expected] in {month}.",
        "A petition [on the subject|against the idea|for the scheme] has [gathered|collected] {num} signatures "
        "since {month}.",
        "“It is a [big|good|long-awaited] day for {district},” said {person}, who has lived on {street} for {n} years.",
        "Neighbours on {street} [said they had heard|learned] nothing about it until {day}.",
        "The {venue} will [host|hold] an open evening for questions on {day}.",
        "{person} [said|remarked that] the town had changed [a great deal|beyond recognition] since {year}.",
        "Asked about the timing, {person} [said|suggested] {month} was the earliest [realistic|likely] date.",
        "At least {n} local [groups|clubs|charities] have written to [support|back] the idea.",
    ),
    topics=(
        _Topic(
            key="council", section="Council", tags=("council", "local politics"),
            titles=("{town} council approves {n} new homes on {street}",
                    "Councillors split over {project}",
                    "Council budget sets aside {money} for {project}",
                    "Residents of {district} challenge plan for {project}"),
            sentences=(
                "Councillors voted {many} to {few} on {day} evening to back {project}.",
                "The scheme will cost about {money}, according to a report seen by the committee.",
                "{person}, who leads the planning committee, said the decision had taken {n} months of talks.",
                "Residents of {district} sent {num} letters about the plan before the meeting.",
                "Work on {project} could begin in {month} if the last paperwork is signed.",
                "Opposition members asked why the cost had grown by {pct} per cent since last year.",
                "A second vote on {project} is expected at the {month} meeting.",
                "The public gallery was full, and {n} people were turned away at the door.",
                "Officers said {num} households in {district} would be affected during the works.",
                "{person}, {role}, told councillors that {district} had waited long enough.",
            ),
            words={"project": ("a new cycle lane", "the covered market repairs", "a second primary school",
                               "the seafront shelter", "the library extension", "a bus lane on the bridge",
                               "the sports hall roof", "a park-and-ride site", "new street lighting",
                               "the public toilets at the quay", "a new skate park")},
        ),
        _Topic(
            key="weather", section="Weather", tags=("weather",),
            titles=("Storm {storm} brings {n} millimetres of rain to {town}",
                    "{town} records {temp} degrees on hottest {day} of the year",
                    "Fog delays ferries for {n} hours as Storm {storm} lingers",
                    "Flood warning lifted for {district} after {n} wet days"),
            sentences=(
                "Forecasters expect gusts of up to {kmh} km/h along the coast on {day}.",
                "The gauge at {district} recorded {n} millimetres of rain in {n2} hours.",
                "Several roads in {district} were closed after drains overflowed near {street}.",
                "{person}, who runs a café on {street}, said water reached the front step by {clock}.",
                "The weather office kept a yellow warning in place until {clock} on {day}.",
                "Temperatures are expected to fall to {temp} degrees overnight.",
                "Crews cleared {n} fallen trees before the morning rush.",
                "Older residents said the last storm of this strength hit the town in {year}.",
                "Buses to {district} ran {n} minutes late because of standing water.",
                "Sandbags were handed out from the {venue} to {num} households.",
            ),
            words={"storm": ("Agnes", "Bram", "Colette", "Dafydd", "Edda", "Fintan", "Gwen", "Hollis",
                             "Isolde", "Jory")},
        ),
        _Topic(
            key="rail", section="Transport", tags=("transport", "rail"),
            titles=("New timetable adds {n} trains a day on the {line}",
                    "{line} to close for {n} weeks of track repairs",
                    "Station upgrade at {station} runs {n} months late",
                    "Passenger numbers on the {line} rise by {pct} per cent"),
            sentences=(
                "The first train will [leave|depart from] {station} at {clock} on [weekdays|Sundays|Saturdays].",
                "Engineers will [replace|relay] {num} metres of track near {district}.",
                "{person}, {role}, said passengers should allow an extra {n} minutes for the [journey|trip].",
                "Replacement buses will [run|leave] from the stop on {street} every {n2} minutes.",
                "About {big} people [use|travel on] the line each week, according to the operator.",
                "Tickets bought before {month} will [still be valid|be accepted] on the new trains.",
                "The new carriages have room for {n} bicycles and [step-free access|wider doors].",
                "Commuters from {district} have [complained about|reported] crowded trains since {month}.",
                "The operator said {pct} per cent of trains [ran|arrived] on time in {month}.",
                "A new footbridge at {station} will open on {day} {dom} {month}.",
            ),
            background=("The {line} opened in 1871 to carry slate from the quarries to the harbour at {town}. "
                        "Passenger trains stopped running in 1968, and the track lay unused for almost forty "
                        "years. A group of volunteers began clearing the line in 2006, and the first new "
                        "service ran in 2015 after the county and the national rail agency agreed to share "
                        "the cost of new signals and platforms."),
        ),
        _Topic(
            key="harbour", section="Local", tags=("harbour", "fishing"),
            titles=("Harbour dredging at {town} to start in {month}",
                    "Fishing fleet lands {n} tonnes of {fish} in one week",
                    "Ferry operator adds {n} sailings to {island}",
                    "Harbour trust plans new pontoon for {n} boats"),
            sentences=(
                "Boats landed {n} tonnes of {fish} at the [fish market|auction|quay] on {day}.",
                "The harbour master, {person}, said the channel had [silted up|filled] by {n2} centimetres.",
                "{n} boats are registered at the harbour, down from {num} [two decades|twenty years] ago.",
                "The ferry to {island} will [run|sail] {n} times a day from {month}.",
                "Dredgers will [remove|lift] about {big} cubic metres of silt from the [inner basin|channel].",
                "{person}, who has fished from the quay for {n} years, said [prices at auction|auction prices] "
                "had [fallen|dropped].",
                "Visitor moorings on the [east|west] pontoon will be closed for {n2} weeks.",
                "Auction prices for {fish} rose by {pct} per cent over the [winter|spring].",
                "The crew of the {boat} were praised for towing a [stranded|drifting] yacht to safety.",
                "Crab pots left on the slipway near {street} will be [removed|cleared] on {day}.",
            ),
            words={"fish": ("mackerel", "crab", "sole", "lobster", "sea bass", "pollock", "scallops", "hake"),
                   "island": ("Gannet Isle", "Skerra", "Holm Minor", "Little Brant Island"),
                   "boat": ("Morwenna", "Sea Lark", "Good Intent", "Tern", "Brave Kittiwake", "Provider")},
            background=("The harbour at {town} was built in the 1820s by merchants who traded timber across "
                        "the bay. The outer wall was extended after the great storm of 1903, and the fish "
                        "market on the quay has stood in the same place since 1911. Today the harbour is run "
                        "by a trust whose board includes fishermen, ferry staff and members of the town "
                        "council."),
        ),
        _Topic(
            key="football", section="Sport", tags=("sport", "football"),
            titles=("{club} beat {rival} {g1}-0 in front of {big} fans",
                    "{club} sign forward {person} from {rival}",
                    "{club} manager warns of tough run of {n} fixtures",
                    "Late goal from {person} earns {club} a draw at {rival}"),
            sentences=(
                "{person} opened the scoring after {minute} minutes with a low shot.",
                "{club} are now {ordinal} in the table, {n} points behind the leaders.",
                "The visitors from {rival} had {n2} shots but found the goalkeeper in good form.",
                "Manager {person} said the squad had trained hard since the defeat in {month}.",
                "A crowd of {big} watched the match at {ground}.",
                "{person} was shown a yellow card after {minute} minutes for a late tackle.",
                "The next home game is against {rival} on {day}.",
                "Season tickets for the youth section now cost {small_money}.",
                "Captain {person} has now played {num} games for the club.",
                "Fans from {district} organised {n} coaches for the away game.",
            ),
            words={"rival": ("Corrow Rovers", "Pennack United", "Saltmarsh Town", "Brinley Wanderers",
                             "Oxhey Albion", "Treen Harriers", "Fallowfield Swifts", "Dunmere City")},
        ),
        _Topic(
            key="science", section="Schools", tags=("schools", "science"),
            titles=("Pupils from {school} win the {town} science fair",
                    "Science fair project turns seaweed into {invention}",
                    "{n} schools compete at science fair in the {venue}",
                    "Young inventors from {district} build {invention}"),
            sentences=(
                "{n} schools entered the fair, which was held in the {venue} on {day}.",
                "The winning team built {invention} from {material}.",
                "{person}, aged {age}, explained how the device measured {measure}.",
                "Judges from the county museum awarded the top prize of {small_money}.",
                "A team from {school} came {ordinal} with a study of {measure}.",
                "Organisers said {num} visitors came through the doors over {n2} hours.",
                "{person}, a science teacher at {school}, said the pupils had started work in {month}.",
                "One stand showed how {material} could keep a greenhouse warm at night.",
                "The youngest entrant, aged {age}, tested {n} kinds of {material}.",
                "Next year's fair will include a prize for projects about {measure}.",
            ),
            words={"invention": ("a solar boat", "a rain alarm", "a paper that stops mould",
                                 "a tide clock", "a bicycle charger", "a bird counter",
                                 "a bee-friendly window box"),
                   "material": ("old bicycle parts", "seaweed", "recycled bottles", "driftwood",
                                "plant pots", "cardboard", "sheep's wool"),
                   "measure": ("salt in rock pools", "air quality on {street}", "noise at the quay",
                               "rainfall in gardens", "light at night", "water in the soil")},
        ),
        _Topic(
            key="roads", section="Transport", tags=("transport", "roads"),
            titles=("Bridge on {street} to close for {n} nights of repairs",
                    "New crossing outside {school} after {n} near misses",
                    "Potholes on {street} cost drivers {small_money} each, survey finds",
                    "Speed limit in {district} cut to {n} mph"),
            sentences=(
                "The bridge will close from {clock} each night for {n} nights.",
                "Diversions will send traffic through {district} and along {street}.",
                "Surveyors counted {num} potholes on roads in the ward last winter.",
                "{person}, {role}, said cars often drove past the school at speed.",
                "The council has set aside {money} for road repairs this year.",
                "Cyclists will be asked to dismount on the bridge while the work goes on.",
                "A count on {day} found {big} vehicles crossed the bridge in one day.",
                "Bus stops on {street} will move {n} metres during the works.",
                "Police said there had been {n2} minor crashes at the junction since {month}.",
            ),
        ),
        _Topic(
            key="festival", section="Local", tags=("culture", "events"),
            titles=("Lantern festival draws {big} visitors to {town}",
                    "Folk festival returns to {district} after {n} years",
                    "Street food market on {street} to run every {day}",
                    "{n} choirs to sing at harbour festival"),
            sentences=(
                "Organisers expect {big} visitors over the {n}-day festival.",
                "The parade will leave {street} at {clock} and end at the quay.",
                "{person}, who has made lanterns for {n} years, taught a workshop at the {venue}.",
                "Stalls on {street} will sell food from {n2} countries.",
                "Tickets for the closing concert cost {small_money} and sold out by {day}.",
                "Volunteers from {district} built a stage from old fishing crates.",
                "The festival raised {money} for the lifeboat station last year.",
                "{person}, {role}, said the music could be heard as far as {district}.",
                "Road closures will be in place on {street} from {clock}.",
            ),
        ),
        _Topic(
            key="library", section="Local", tags=("culture", "library"),
            titles=("Library lends {big} books in record {month}",
                    "Old map of {town} found in library basement",
                    "Library in {district} to open on {day} evenings",
                    "{n} volunteers help library move to the {venue}"),
            sentences=(
                "The library lent {big} books in {month}, more than in any month since {year}.",
                "A map of the town drawn in {year} was found in a box of old parish papers.",
                "{person}, the chief librarian, said the map showed {n} streets that no longer exist.",
                "The reading room will stay open until {clock} on {day} evenings.",
                "Children borrowed {num} picture books during the spring holiday.",
                "The archive is asking families in {district} for old photographs of {street}.",
                "{person}, {role}, said the library was the warmest place in town in winter.",
                "A new language corner offers books in {n} languages.",
                "Late fees for children were scrapped in {month} after {n2} years.",
            ),
        ),
        _Topic(
            key="business", section="Local", tags=("business",),
            titles=("Bakery on {street} celebrates {n} years in business",
                    "{n} new shops open in {district} this spring",
                    "Boatyard wins order for {n} wooden dinghies",
                    "Market traders on {street} protest over rent rise of {pct} per cent"),
            sentences=(
                "The bakery on {street} bakes about {num} loaves before {clock} each day.",
                "{person}, who opened the shop in {year}, still starts work before dawn.",
                "Rents on {street} rose by {pct} per cent this year, traders said.",
                "The boatyard employs {n} people and has taken on {n2} apprentices.",
                "Footfall in {district} rose by {pct} per cent in {month}, a survey found.",
                "{person}, {role}, said shoppers wanted more reasons to come into town.",
                "The market will move to {street} for {n} weeks while the square is repaved.",
                "Each dinghy takes about {num} hours to build by hand.",
                "A grant of {small_money} per shop is available to repaint old shopfronts.",
            ),
        ),
    ),
    thousands=",",
    money=lambda r: (f"£{r.randint(1, 9)}.{r.randint(1, 9)} million" if r.random() < 0.5
                     else f"£{r.randint(12, 950)},000"),
    small_money=lambda r: f"£{r.randint(5, 480)}",
)

_FR = _Lang(
    code="fr",
    site_name="La Gazette du Port",
    site_name_patterns=("La Gazette de {town}", "Le Courrier de {town}", "L'Écho de {town}",
                        "Le Journal de {town}", "La Vigie de {town}"),
    tagline="L'actualité de la ville, du port et de la vallée",
    nav=("Accueil", "Ville", "Conseil", "Transports", "Sport", "Météo", "Écoles", "Opinions", "Contact"),
    cookie="Nous utilisons des cookies pour améliorer votre expérience et afficher des publicités adaptées. "
           "Vous pouvez modifier votre choix à tout moment.",
    cookie_ok="Tout accepter",
    byline="Par {author}",
    updated="Mis à jour à {hh}h{mm} le {dd}/{mo}",
    follow="Suivez-nous sur WeChat : scannez le code QR pour recevoir nos titres chaque matin.",
    share="Partager cet article : Facebook · X · WhatsApp · E-mail",
    related="Sur le même sujet",
    most_read="Les plus lus",
    read_also="Lire aussi",
    latest="Dernières nouvelles",
    newsletter="Inscrivez-vous à notre lettre gratuite pour ne rien manquer.",
    footer=("Qui sommes-nous", "Publicité", "Confidentialité", "Mentions légales", "Nous écrire"),
    months=("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
            "novembre", "décembre"),
    date_pattern="{d} {month} {y}",
    town_parts=(("Ker", "Tro", "Plou", "Lan", "Pen", "Mor", "Beau", "Ros", "Vil", "Cor", "Sau", "Mar"),
                ("lac", "gavel", "venec", "morin", "ric", "vallon", "nivet", "bec", "quelin", "dorée",
                 "guen", "fleur")),
    site_words={
        "line": ("ligne de la Vallée", "ligne des Ardoisières", "ligne du Littoral"),
        "club": ("Stade {town}", "FC {town}", "Racing Club {town}"),
        "ground": ("stade du Quai", "stade des Corderies", "parc des Sports"),
        "station": ("gare de {town}", "gare du Port", "halte de {town}-Ville"),
    },
    words={
        "first": ("Anaïs", "Bastien", "Corentin", "Delphine", "Élodie", "Fabrice", "Gwenola", "Hugo", "Inès",
                  "Jules", "Katell", "Loïc", "Maëlle", "Nicolas", "Océane", "Pierrick", "Rozenn", "Solène",
                  "Tanguy", "Yannick"),
        "last": ("Le Bihan", "Morvan", "Guéguen", "Kerouac", "Le Goff", "Tanguy", "Riou", "Cadiou",
                 "Le Dantec", "Quéré", "Floch", "Jaouen", "Le Roux", "Nédélec", "Prigent", "Salaün"),
        "street": ("rue du Quai", "rue des Cordiers", "place du Marché", "rue de la Douane", "rue de l'Église",
                   "rue de la Gare", "rue des Tanneurs", "rue du Phare", "rue du Moulin", "place des Mouettes"),
        # No leading article, so "près de {district}" never needs a contraction ("du", "des").
        "district": ("Kerbriant", "Saint-Ernel", "Pors-Moren", "Lann-Vraz", "Kervelen", "Roc'h-Glaz",
                     "Penhoat", "Goas-Treiz"),
        "day": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
        "month": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "septembre", "octobre",
                  "novembre", "décembre"),
        "role": ("membre du comité de quartier", "bénévole à la banque alimentaire",
                 "propriétaire d'un café du port", "libraire du centre", "fleuriste du marché",
                 "responsable d'une association de parents", "membre du conseil des sages", "élève de terminale"),
        "verdict": ("encourageante", "inquiétante", "surprenante", "décevante", "attendue depuis longtemps"),
        "venue": ("salle des fêtes", "mairie", "maison des associations", "médiathèque", "halle aux poissons",
                  "ancienne criée"),
        "fish": ("sardine", "bar", "sole", "langoustine", "maquereau", "seiche", "coquille Saint-Jacques"),
        "island": ("l'île aux Moines-Sud", "l'île Verte", "l'île de Gavrinel"),
        "rival": ("Stade Plouvenec", "US Kermaria", "AS Trolac", "FC Beaumorin", "Étoile de Lanric"),
    },
    generic=(
        "« Nous [attendions|réclamions] cela depuis {n} ans », [confie|explique] {person}, {role}.",
        "{person}, {role}, juge la nouvelle {verdict}.",
        "Une réunion publique [aura lieu|est prévue] à la {venue} {day} à {clock}.",
        "[D'autres|De nouveaux] détails seront [connus|dévoilés] en {month}.",
        "Une pétition a déjà [recueilli|rassemblé] {num} signatures depuis {month}.",
        "« C'est une [grande|belle] journée pour {district} », [estime|se réjouit] {person}, qui habite {street} "
        "depuis {n} ans.",
        "Les riverains de la {street} [disent n'avoir rien su avant|n'ont été prévenus que] {day}.",
        "Selon {person}, la ville a [beaucoup|profondément] changé depuis {year}.",
        "Au moins {n} associations [locales|du quartier] ont écrit pour [soutenir|appuyer] le projet.",
        "[Interrogé|Sollicité] par notre rédaction, {person} [n'a pas souhaité|a refusé de] commenter.",
        "{person}, {role}, [espère|souhaite] une décision [rapide|claire] avant {month}.",
        "La question sera de nouveau [abordée|débattue] lors du conseil de {month}.",
        "Sur les réseaux sociaux, {num} [messages|commentaires] ont été publiés en {n} jours.",
    ),
    topics=(
        _Topic(
            key="council", section="Conseil", tags=("conseil municipal", "politique locale"),
            titles=("Le conseil de {town} approuve {n} logements {street}",
                    "Budget : {money} pour {project}",
                    "Les élus divisés sur {project}"),
            sentences=(
                "Les élus ont voté par {many} voix contre {few} {day} soir en faveur de {project}.",
                "Le projet coûtera [environ|près de] {money}, selon un rapport [présenté|examiné] en commission.",
                "{person}, qui préside la commission d'urbanisme, évoque {n} mois de [discussions|négociations].",
                "Les habitants de {district} ont [envoyé|adressé] {num} courriers [avant la séance|à la mairie].",
                "Les travaux de {project} pourraient [commencer|démarrer] en {month}.",
                "La séance a duré {n} heures et s'est terminée [peu avant|après] minuit.",
                "Un second vote sur {project} est [attendu|prévu] en {month}.",
                "L'opposition [demande|veut savoir] pourquoi le coût a [augmenté|grimpé] de {pct} % en un an.",
                "Selon les services, {num} foyers de {district} seront [concernés par|gênés par] le chantier.",
            ),
            words={"project": ("la piste cyclable", "la rénovation des halles", "la nouvelle école",
                               "l'extension de la médiathèque", "le parking relais", "l'éclairage public")},
        ),
        _Topic(
            key="weather", section="Météo", tags=("météo",),
            titles=("La tempête {storm} déverse {n} millimètres de pluie sur {town}",
                    "Brouillard : les bateaux retardés de {n} heures",
                    "Vigilance levée à {district} après {n} jours de pluie"),
            sentences=(
                "Les prévisionnistes [annoncent|prévoient] des rafales jusqu'à {kmh} km/h sur la côte {day}.",
                "Le pluviomètre de {district} a [relevé|enregistré] {n} millimètres en {n2} heures.",
                "Les bateaux sont restés à quai pendant {n} heures [à cause du|en raison du] vent.",
                "Une alerte orange [a été|reste] en vigueur jusqu'à {clock} {day}.",
                "Plusieurs rues de {district} ont été [fermées|coupées] après le débordement des égouts "
                "[vers|peu après] {clock}.",
                "{person}, qui tient un café {street}, raconte que l'eau a [atteint|léché] la porte vers {clock}.",
                "Les températures devraient [descendre|chuter] à {temp} degrés [cette nuit|dans la nuit de {day}].",
                "Les pompiers ont [dégagé|tronçonné] {n} arbres tombés [avant l'aube|dans {district}].",
                "Des sacs de sable ont été [distribués|remis] à {num} foyers depuis la {venue}.",
            ),
            words={"storm": ("Aline", "Brieuc", "Cyrielle", "Denez", "Enora", "Florian")},
        ),
        _Topic(
            key="rail", section="Transports", tags=("transports", "train"),
            titles=("La {line} gagne {n} trains par jour",
                    "La {line} fermée {n} semaines pour travaux",
                    "Hausse de {pct} % du nombre de voyageurs sur la {line}"),
            sentences=(
                "Le premier train [quittera|partira de] la {station} à {clock} [en semaine|le {day}].",
                "Les ouvriers [remplaceront|renouvelleront] {num} mètres de voie près de {district}.",
                "Les nouvelles rames offrent {n} places pour les vélos "
                "[et un accès de plain-pied|et des portes plus larges].",
                "{person}, {role}, [conseille|recommande] de prévoir {n} minutes de plus pour le [trajet|voyage].",
                "Des cars de substitution [partiront|circuleront] depuis la {street} toutes les {n2} minutes.",
                "[Environ|Près de] {big} personnes empruntent la ligne chaque [semaine|mois], selon l'exploitant.",
                "Les usagers de {district} se plaignent de trains [bondés|en retard] depuis {month}.",
                "La rénovation des quais de la {station} [coûtera|devrait coûter] {money}.",
                "Les abonnés de {district} auront une réduction de {pct} % [jusqu'en|pendant tout] {month}.",
                "Un passage à niveau près de {district} sera [équipé de barrières|sécurisé] d'ici {month}.",
                "[Selon|D'après] l'exploitant, {pct} % des trains [étaient|sont arrivés] à l'heure en {month}.",
            ),
            background=("La {line} a été ouverte en 1871 pour acheminer l'ardoise des carrières jusqu'au port "
                        "de {town}. Le service voyageurs s'est arrêté en 1968 et la voie est restée à "
                        "l'abandon pendant près de quarante ans. Des bénévoles ont commencé à la dégager en "
                        "2006, et le premier train a de nouveau circulé en 2015, après un accord entre le "
                        "département et la compagnie nationale pour partager le coût des travaux."),
        ),
        _Topic(
            key="harbour", section="Ville", tags=("port", "pêche"),
            titles=("Dragage du port de {town} à partir de {month}",
                    "La flottille débarque {n} tonnes de {fish} en une semaine",
                    "{n} rotations de plus vers {island}"),
            sentences=(
                "Les bateaux ont [débarqué|vendu] {n} tonnes de {fish} à la criée {day}.",
                "{person}, responsable du port, [indique|précise] que le chenal s'est envasé de {n2} centimètres.",
                "Le port compte {n} bateaux [immatriculés|en activité], contre {num} il y a [vingt|trente] ans.",
                "La navette vers {island} fera {n} allers-retours par jour [dès|à partir de] {month}.",
                "Les pontons [visiteurs|de plaisance] resteront fermés pendant {n2} semaines.",
                "Les dragues [retireront|extrairont] environ {big} mètres cubes de vase du [bassin|chenal].",
                "Les plaisanciers de {district} [attendent|réclament] {n} places de plus au ponton.",
                "Le syndicat du port [a voté|a approuvé] un budget de {money} pour la digue.",
                "Les mareyeurs ont acheté {num} caisses de {fish} [lors de la vente|à la criée] de {day}.",
                "{person}, qui pêche depuis {n} ans, [regrette|déplore] la baisse des prix à la criée.",
                "Le prix du kilo de {fish} a [progressé|augmenté] de {pct} % [cet hiver|ce printemps].",
            ),
            background=("Le port de {town} a été construit dans les années 1820 par des négociants qui "
                        "faisaient le commerce du bois de l'autre côté de la baie. La grande digue a été "
                        "prolongée après la tempête de 1903, et la criée occupe le même quai depuis 1911. "
                        "Aujourd'hui, le port est géré par un syndicat mixte qui réunit pêcheurs, marins "
                        "des navettes et élus de la ville."),
        ),
        _Topic(
            key="football", section="Sport", tags=("sport", "football"),
            titles=("Le {club} bat {rival} {g1}-0 devant {big} spectateurs",
                    "Le {club} recrute l'attaquant {person}",
                    "But tardif de {person}, le {club} arrache le nul face à {rival}"),
            sentences=(
                "{person} a ouvert le score à la {minute}e minute d'une [frappe à ras de terre|tête décroisée].",
                "Le {club} [pointe désormais|se retrouve] à la {n}e place, à {n2} points du [leader|podium].",
                "Face au {club}, {rival} a [tenté|cadré] {n} tirs sans tromper le gardien.",
                "Sur le banc, {person} [salue|souligne] le travail du groupe depuis la défaite de {month}.",
                "{big} spectateurs ont [assisté à|suivi] la rencontre au {ground}.",
                "Les supporters de {district} ont [affrété|rempli] {n} cars pour le déplacement.",
                "Le prochain match à domicile [aura lieu|se jouera] {day} face à {rival}.",
                "{person}, capitaine de l'équipe, compte désormais {num} matchs sous le maillot du club.",
            ),
        ),
    ),
    thousands=" ",
    money=lambda r: f"{r.randint(1, 9)},{r.randint(1, 9)} millions d'euros",
    small_money=lambda r: f"{r.randint(5, 480)} euros",
)

_DE = _Lang(
    code="de",
    site_name="Der Hafenbote",
    site_name_patterns=("{town}er Zeitung", "{town}er Anzeiger", "Der {town}er Bote", "{town}er Rundschau"),
    tagline="Nachrichten aus der Stadt, vom Hafen und aus dem Tal",
    nav=("Startseite", "Lokales", "Rathaus", "Verkehr", "Sport", "Wetter", "Schulen", "Meinung", "Kontakt"),
    cookie="Wir verwenden Cookies, um Ihr Erlebnis zu verbessern und passende Werbung anzuzeigen. "
           "Sie können Ihre Auswahl jederzeit ändern.",
    cookie_ok="Alle akzeptieren",
    byline="Von {author}",
    updated="Zuletzt aktualisiert um {hh}.{mm} Uhr am {dd}.{mo}.",
    follow="Folgen Sie uns auf WeChat: Scannen Sie den QR-Code für unsere Top-Meldungen am Morgen.",
    share="Artikel teilen: Facebook · X · WhatsApp · E-Mail",
    related="Mehr zum Thema",
    most_read="Meistgelesen",
    read_also="Lesen Sie auch",
    latest="Neueste Meldungen",
    newsletter="Abonnieren Sie unseren kostenlosen Newsletter.",
    footer=("Über uns", "Anzeigen", "Datenschutz", "Impressum", "Leserbriefe"),
    months=("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September", "Oktober",
            "November", "Dezember"),
    date_pattern="{d}. {month} {y}",
    town_parts=(("Kirch", "Möwen", "Hafen", "Sand", "Lind", "Brem", "Wald", "Fisch", "Stein", "Roth", "Eck",
                 "Haller"),
                ("bucht", "hagen", "wik", "moor", "stedt", "feld", "ort", "siel", "lohe", "kamp", "dorf",
                 "au")),
    site_words={
        "line": ("Talbahn", "Küstenbahn", "Schieferbahn"),
        "club": ("SV {town}", "TuS {town}", "FC {town}", "VfB {town}"),
        "ground": ("Stadion am Kai", "Sportpark Reeperbahn", "Waldstadion"),
        "station": ("Bahnhof {town}", "Haltepunkt {town}-Hafen", "Bahnhof {town}-Mitte"),
    },
    words={
        "first": ("Anke", "Bernd", "Carla", "Dirk", "Elke", "Frauke", "Gerrit", "Hauke", "Imke", "Jannik",
                  "Kerstin", "Lasse", "Meike", "Nils", "Ole", "Piet", "Rieke", "Sönke", "Tjark", "Wiebke"),
        "last": ("Petersen", "Harms", "Janssen", "Ohlsen", "Brodersen", "Thießen", "Carstens", "Lorenzen",
                 "Asmussen", "Feddersen", "Hinrichs", "Matthiesen", "Nissen", "Rickmers", "Sievers"),
        "street": ("Hafenstraße", "Mühlengasse", "Kirchstraße", "Marktstraße", "Reeperbahn", "Bahnhofstraße",
                   "Fischergasse", "Deichstraße", "Lotsengasse"),
        "district": ("Wittmoor", "Süderhafen", "Neumoor", "Kirchberg", "Norderfeld", "Oberdorf"),
        "day": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
        "month": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "September", "Oktober",
                  "November", "Dezember"),
        "role": ("Mitglied im Bürgerverein", "Mitglied im Elternrat der Grundschule", "Mitglied im Seniorenbeirat",
                 "Mitglied der Freiwilligen Feuerwehr", "Mitglied im Segelclub", "Mitglied im Heimatverein"),
        "venue": ("Rathaussaal", "Gemeindehaus", "Bürgerhaus", "Lesesaal der Bücherei", "alten Zollhaus"),
        "verdict": ("erfreulich", "überfällig", "überraschend", "enttäuschend", "vernünftig", "bedenklich"),
        "fish": ("Hering", "Scholle", "Dorsch", "Krabben", "Makrele", "Seelachs"),
        "island": ("Möweninsel", "Hallig Süderoog-Nord", "Insel Lütt-Sand"),
        "rival": ("SV Brinkhagen", "TuS Ostersiel", "FC Lindmoor", "VfB Sandwik", "Eintracht Kirchfeld"),
    },
    generic=(
        "„Darauf [warten|hoffen] wir seit {n} Jahren“, [sagt|meint] {person}, {role}.",
        "{person}, {role}, findet die Nachricht {verdict}.",
        "Eine Bürgerversammlung [findet|ist] am {day} um {clock} Uhr im {venue} [statt|geplant].",
        "Weitere [Einzelheiten|Details] sollen im {month} bekannt werden.",
        "Eine Unterschriftenliste hat seit {month} bereits {num} Unterschriften [gesammelt|erhalten].",
        "„Das ist ein großer Tag für {district}“, sagt {person}, seit {n} Jahren in der {street} zu Hause.",
        "Anwohner der {street} sagen, sie hätten erst am {day} davon erfahren.",
        "Nach Ansicht von {person} hat sich die Stadt seit {year} stark verändert.",
        "Mindestens {n} [Vereine|Verbände] haben Briefe zur Unterstützung geschrieben.",
    ),
    topics=(
        _Topic(
            key="council", section="Rathaus", tags=("Stadtrat", "Lokalpolitik"),
            titles=("Stadtrat von {town} billigt {n} neue Wohnungen in der {street}",
                    "Haushalt: {money} für {project}",
                    "Streit im Stadtrat über {project}"),
            sentences=(
                "Der Rat stimmte am {day}abend mit {many} zu {few} Stimmen für {project}.",
                "Das Vorhaben kostet laut Verwaltung rund {money}.",
                "{person} leitet den Bauausschuss und spricht von {n} Monaten Beratung.",
                "Anwohner aus {district} schickten vor der Sitzung {num} Briefe.",
                "Die Arbeiten für {project} könnten im {month} beginnen.",
                "Die Opposition fragt, warum die Kosten um {pct} Prozent gestiegen sind.",
                "Nach Angaben der Verwaltung sind {num} Haushalte in {district} betroffen.",
            ),
            words={"project": ("den neuen Radweg", "die Sanierung der Markthalle", "eine zweite Grundschule",
                               "den Anbau der Bücherei", "einen Park-and-Ride-Platz", "neue Straßenlaternen")},
        ),
        _Topic(
            key="weather", section="Wetter", tags=("Wetter",),
            titles=("Sturm {storm} bringt {n} Liter Regen pro Quadratmeter nach {town}",
                    "Nebel: Fähren {n} Stunden verspätet",
                    "Hochwasserwarnung für {district} nach {n} Regentagen aufgehoben"),
            sentences=(
                "Meteorologen erwarten am {day} Böen bis {kmh} km/h an der Küste.",
                "Die Messstation in {district} meldete {n} Liter Regen in {n2} Stunden.",
                "Mehrere Straßen in {district} wurden wegen überlaufender Gullys gesperrt.",
                "{person} betreibt ein Café in der {street} und sagt, um {clock} Uhr stand das Wasser vor der Tür.",
                "In der Nacht sollen die Temperaturen auf {temp} Grad fallen.",
                "Die Feuerwehr räumte {n} umgestürzte Bäume vor dem Berufsverkehr.",
                "Im {venue} wurden Sandsäcke an {num} Haushalte ausgegeben.",
            ),
            words={"storm": ("Antje", "Broder", "Colja", "Detlef", "Enno", "Fenja")},
        ),
        _Topic(
            key="rail", section="Verkehr", tags=("Verkehr", "Bahn"),
            titles=("Neuer Fahrplan: {n} Züge mehr auf der {line}",
                    "{line} für {n} Wochen gesperrt",
                    "Fahrgastzahlen auf der {line} steigen um {pct} Prozent"),
            sentences=(
                "Der erste Zug fährt [werktags|sonntags] um {clock} Uhr am {station} ab.",
                "Arbeiter erneuern {num} Meter Gleis bei {district}.",
                "{person}, {role}, rät, {n} Minuten mehr für die Fahrt einzuplanen.",
                "Ersatzbusse fahren alle {n2} Minuten ab der Haltestelle in der {street}.",
                "Rund {big} Menschen nutzen die Strecke pro Woche.",
                "Pendler aus {district} klagen seit {month} über volle Züge.",
                "Laut Betreiber waren im {month} {pct} Prozent der Züge pünktlich.",
            ),
            background=("Die {line} wurde 1871 eröffnet, um Schiefer aus den Brüchen zum Hafen von {town} "
                        "zu bringen. Der Personenverkehr endete 1968, und die Gleise lagen fast vierzig "
                        "Jahre brach. Freiwillige begannen 2006, die Strecke freizuräumen, und 2015 fuhr "
                        "wieder ein Zug, nachdem sich Kreis und Bahn auf die Teilung der Kosten für Signale "
                        "und Bahnsteige geeinigt hatten."),
        ),
        _Topic(
            key="harbour", section="Lokales", tags=("Hafen", "Fischerei"),
            titles=("Baggerarbeiten im Hafen von {town} ab {month}",
                    "Fischer landen {n} Tonnen {fish} in einer Woche an",
                    "{n} zusätzliche Fährfahrten zur {island}"),
            sentences=(
                "Die Kutter landeten am {day} {n} Tonnen {fish} an der Fischhalle an.",
                "Im Hafenamt sagt {person}, die Fahrrinne sei um {n2} Zentimeter verschlickt.",
                "Im Hafen sind {n} Boote gemeldet, vor zwanzig Jahren waren es {num}.",
                "Die Fähre zur {island} fährt ab {month} {n} Mal am Tag.",
                "Bagger sollen rund {big} Kubikmeter Schlick aus dem Becken holen.",
                "{person} fischt seit {n} Jahren und beklagt sinkende Preise bei der Auktion.",
                "Die Preise für {fish} stiegen im Winter um {pct} Prozent.",
            ),
            background=("Der Hafen von {town} wurde in den 1820er-Jahren von Kaufleuten gebaut, die Holz "
                        "über die Bucht handelten. Die Außenmole wurde nach der großen Sturmflut von 1903 "
                        "verlängert, und die Fischhalle steht seit 1911 an derselben Stelle am Kai. Heute "
                        "verwaltet eine Stiftung den Hafen, in deren Vorstand Fischer, Fährleute und "
                        "Mitglieder des Stadtrats sitzen."),
        ),
        _Topic(
            key="football", section="Sport", tags=("Sport", "Fußball"),
            titles=("{club} schlägt {rival} vor {big} Zuschauern mit {g1}:0",
                    "{club} verpflichtet Stürmer {person}",
                    "Später Treffer von {person} rettet {club} einen Punkt gegen {rival}"),
            sentences=(
                "{person} traf in der {minute}. Minute mit einem flachen Schuss zur Führung.",
                "{club} steht nun auf Platz {n}, {n2} Punkte hinter dem Spitzenreiter.",
                "{rival} gab {n} Schüsse ab, scheiterte aber am Torwart.",
                "Auf der Trainerbank lobt {person} die Arbeit der Mannschaft seit der Niederlage im {month}.",
                "{big} Zuschauer sahen das Spiel im {ground}.",
                "Das nächste Heimspiel ist am {day} gegen {rival}.",
                "{person} hat als Kapitän nun {num} Spiele für den Verein bestritten.",
            ),
        ),
    ),
    thousands=".",
    money=lambda r: f"{r.randint(1, 9)},{r.randint(1, 9)} Millionen Euro",
    small_money=lambda r: f"{r.randint(5, 480)} Euro",
)

LANGUAGES: dict[str, _Lang] = {lang.code: lang for lang in (_EN, _FR, _DE)}
# Topics whose background paragraph must turn up in at least two articles of a site.
_BACKGROUND_TOPICS = ("rail", "harbour")

# ------------------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Article:
    """One article: ground truth for what extraction plus cleaning should return."""

    slug: str
    title: str
    author: str
    published: datetime
    paragraphs: list[str]
    tags: list[str]
    topic: str = ""
    updated: datetime | None = None


@dataclass
class _Generator:
    """The state a site needs to make more articles consistently (``add_article``)."""

    lang: _Lang
    rng: random.Random
    seed: str
    consts: dict[str, str]
    staff: list[str]
    used_sentences: set[str]
    used_titles: set[str]
    used_slugs: set[str] = field(default_factory=set)
    backgrounds: dict[str, str] = field(default_factory=dict)
    # Rendered bodies of the chrome shared by all pages, computed once per site.
    header_html: str = ""
    footer_html: str = ""


@dataclass
class DemoSite:
    """A generated site: its routes (mount them on a ``LocalServer``), articles and ground truth.

    ``articles`` is in publication order (oldest first); the feed lists them newest first.
    """

    base_url: str
    prefix: str
    site_name: str
    language: str
    town: str
    routes: dict[str, Response]
    articles: list[Article]
    feed_path: str
    index_path: str
    feed_limit: int | None = None
    _gen: _Generator | None = field(default=None, repr=False, compare=False)

    def url(self, path: str) -> str:
        """Absolute URL of a route path of this site."""
        return self.base_url + path

    @property
    def feed_url(self) -> str:
        return self.url(self.feed_path)

    def article_path(self, slug: str) -> str:
        return f"{self.prefix}/articles/{slug}.html"

    def article_url(self, slug: str) -> str:
        return self.url(self.article_path(slug))

    def article(self, slug: str) -> Article:
        for art in self.articles:
            if art.slug == slug:
                return art
        raise KeyError(slug)

    def expected_text(self, slug: str) -> str:
        """The ground truth: the article's real paragraphs, one per line (no title, no boilerplate)."""
        return "\n".join(self.article(slug).paragraphs)

    def boilerplate_lines(self, slug: str) -> list[str]:
        """The template lines placed inside this article's container (what cleaning should remove)."""
        art = self.article(slug)
        lang = self._require_gen().lang
        parts = _page_parts(self, art)
        lines = [_updated_line(lang, art), lang.follow, lang.share, lang.related, lang.most_read]
        if parts.read_also:
            lines.append(f"{lang.read_also}: {self.article(parts.read_also).title}")
        titles = [self.article(s).title for s in parts.related + parts.most_read]
        return lines + list(dict.fromkeys(titles))

    def _require_gen(self) -> _Generator:
        if self._gen is None:
            raise ValueError("this DemoSite was not made by build_site")
        return self._gen


# ------------------------------------------------------------------------------------------------------------
# Text generation
# ------------------------------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
# Inline alternatives, "[said|told reporters]": they break up the fixed word runs that same-beat articles
# would otherwise share, which is what keeps their shingle overlap low.
_CHOICE = re.compile(r"\[([^\[\]]*)\]")
_WORDS = re.compile(r"\w+")


def _number(lang: _Lang, value: int) -> str:
    return f"{value:,}".replace(",", lang.thousands)


class _Filler:
    """Fills template slots: site constants first, then topic words, language words, numbers."""

    def __init__(self, rng: random.Random, lang: _Lang, topic: _Topic | None, consts: Mapping[str, str]):
        self.rng, self.lang, self.topic, self.consts = rng, lang, topic, consts

    def __call__(self, match: re.Match[str]) -> str:
        return self.get(match.group(1))

    def get(self, key: str) -> str:
        r, lang = self.rng, self.lang
        if key in self.consts:
            return self.consts[key]
        words = (self.topic.words.get(key) if self.topic else None) or lang.words.get(key)
        if words:
            # One level of nesting, e.g. "air quality on {street}".
            return _SLOT.sub(self, r.choice(words))
        if key == "person":
            return f"{r.choice(lang.words['first'])} {r.choice(lang.words['last'])}"
        if key in _RANGES:
            low, high = _RANGES[key]
            return str(r.randint(low, high))
        if key == "big":
            return _number(lang, r.randint(1200, 48000))
        if key == "clock":
            return f"{r.randint(6, 22):02d}:{r.choice((0, 15, 20, 30, 40, 45)):02d}"
        if key == "money":
            return lang.money(r)
        if key == "small_money":
            return lang.small_money(r)
        raise KeyError(key)


_RANGES: dict[str, tuple[int, int]] = {
    "n": (2, 40), "n2": (2, 40), "many": (7, 19), "few": (1, 6), "num": (41, 980), "pct": (3, 65),
    "minute": (2, 89), "dom": (1, 28), "year": (1890, 1990), "age": (9, 17), "temp": (-4, 34), "kmh": (60, 140),
    "g1": (1, 5),
}


def _fill(template: str, filler: _Filler) -> str:
    if "[" in template:
        template = _CHOICE.sub(lambda m: filler.rng.choice(m.group(1).split("|")), template)
    return _SLOT.sub(filler, template)


def _capitalise(text: str) -> str:
    # Templates may open on a slot that starts in lower case ("the Old Town"), or behind a quote mark; one
    # that opens on a number stays as it is ("23 new shops", not "23 New shops").
    for i, ch in enumerate(text):
        if ch.isalnum():
            return text[:i] + ch.upper() + text[i + 1:] if ch.isalpha() else text
    return text


def _slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text.replace("ß", "ss")).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:72].rstrip("-")


def _word_count(text: str) -> int:
    return len(_WORDS.findall(text))


def _site_consts(rng: random.Random, lang: _Lang, town: str) -> dict[str, str]:
    consts = {"town": town}
    for key, options in lang.site_words.items():
        consts[key] = rng.choice(options).format(town=town)
    return consts


def _town_name(rng: random.Random, lang: _Lang, taken: set[str]) -> str:
    heads, tails = lang.town_parts
    for _ in range(200):
        name = rng.choice(heads) + rng.choice(tails)
        if name not in taken:
            taken.add(name)
            return name
    # More sites than syllable pairs: number the rest rather than loop forever.
    name = f"{rng.choice(heads)}{rng.choice(tails)} {len(taken)}"
    taken.add(name)
    return name


def _new_generator(seed: str, lang: _Lang, town: str, used_titles: set[str],
                   used_sentences: set[str]) -> _Generator:
    rng = random.Random(seed)
    consts = _site_consts(rng, lang, town)
    staff: list[str] = []
    while len(staff) < 5:
        name = f"{rng.choice(lang.words['first'])} {rng.choice(lang.words['last'])}"
        if name not in staff:
            staff.append(name)
    gen = _Generator(lang=lang, rng=rng, seed=seed, consts=consts, staff=staff, used_sentences=used_sentences,
                     used_titles=used_titles)
    for topic in lang.topics:
        if topic.background:
            gen.backgrounds[topic.key] = topic.background.format_map(consts)
    return gen


def _sentence(gen: _Generator, filler: _Filler, template: str) -> str | None:
    """A filled template that no article of the site (or of its ``build_many`` siblings) used yet."""
    # A few tries only: a template whose slots are nearly exhausted on this site is simply skipped.
    for _ in range(4):
        text = _capitalise(_fill(template, filler))
        if text not in gen.used_sentences:
            gen.used_sentences.add(text)
            return text
    return None


# Topic words that name what the article is about: drawn once per article so title and body agree.
_ARTICLE_KEYS = ("project", "storm", "invention", "island", "boat")


def _article_words(gen: _Generator, topic: _Topic) -> dict[str, str]:
    filler = _Filler(gen.rng, gen.lang, topic, gen.consts)
    return gen.consts | {key: filler.get(key) for key in _ARTICLE_KEYS if key in topic.words}


def _make_paragraphs(gen: _Generator, topic: _Topic, words_: Mapping[str, str],
                     with_background: bool) -> list[str]:
    rng, lang = gen.rng, gen.lang
    filler = _Filler(rng, lang, topic, words_)
    background = gen.backgrounds.get(topic.key) if with_background else None
    budget = _MAX_WORDS - (_word_count(background) if background else 0) - 10
    floor = _MIN_WORDS + 10 - (_word_count(background) if background else 0)
    # An article carrying the shared background gets a longer body of its own, so two such articles stay
    # well clear of near-duplicate territory.
    target = min(rng.randint(_MIN_WORDS + 20, 420) + (60 if background else 0), budget)
    # Topic templates and generic quotes and asides, each at most once per article so an article does not
    # repeat its own sentence shapes (or contradict itself); only a short article draws from them again.
    pool = list(topic.sentences) + list(lang.generic)
    rng.shuffle(pool)
    paragraphs: list[str] = []
    words = 0
    while words < target or len(paragraphs) < 3:
        size = rng.randint(2, 4)
        sentences: list[str] = []
        while len(sentences) < size:
            if not pool:
                if words + sum(map(_word_count, sentences)) >= floor and len(paragraphs) >= 2:
                    break
                pool = list(topic.sentences) + list(lang.generic)
                rng.shuffle(pool)
            text = _sentence(gen, filler, pool.pop())
            if text is not None:
                sentences.append(text)
        if not sentences:
            break
        paragraph = " ".join(sentences)
        if words + _word_count(paragraph) > budget and len(paragraphs) >= 3:
            break
        paragraphs.append(paragraph)
        words += _word_count(paragraph)
    if background:
        # Background sits mid-article, as in real reporting: never the lede, never the closing line.
        paragraphs.insert(rng.randint(1, len(paragraphs) - 1), background)
    return paragraphs


def _make_title(gen: _Generator, topic: _Topic) -> tuple[str, dict[str, str]]:
    title, words_ = "", gen.consts
    for _ in range(60):
        words_ = _article_words(gen, topic)
        title = _capitalise(_fill(gen.rng.choice(topic.titles), _Filler(gen.rng, gen.lang, topic, words_)))
        if title not in gen.used_titles:
            break
    else:
        # Exhausted the template space (only with very many articles per site): disambiguate explicitly.
        base, k = title, 2
        while title in gen.used_titles:
            title, k = f"{base} ({k})", k + 1
    gen.used_titles.add(title)
    return title, words_


def _make_slug(gen: _Generator, title: str) -> str:
    base = _slugify(title) or "article"
    slug, k = base, 2
    while slug in gen.used_slugs:
        slug, k = f"{base}-{k}", k + 1
    gen.used_slugs.add(slug)
    return slug


def _make_article(gen: _Generator, topic: _Topic, published: datetime, with_background: bool) -> Article:
    title, words_ = _make_title(gen, topic)
    paragraphs = _make_paragraphs(gen, topic, words_, with_background)
    return Article(
        slug=_make_slug(gen, title), title=title, author=gen.rng.choice(gen.staff), published=published,
        paragraphs=paragraphs, tags=list(topic.tags), topic=topic.key,
        updated=published + timedelta(minutes=gen.rng.randint(4, 600)),
    )


# ------------------------------------------------------------------------------------------------------------
# Rendering
# ------------------------------------------------------------------------------------------------------------


def _updated_line(lang: _Lang, art: Article) -> str:
    t = art.updated or art.published
    return lang.updated.format(hh=f"{t.hour:02d}", mm=f"{t.minute:02d}", dd=f"{t.day:02d}", mo=f"{t.month:02d}")


def _human_date(lang: _Lang, t: datetime) -> str:
    return lang.date_pattern.format(d=t.day, month=lang.months[t.month - 1], y=t.year)


def _page_rng(site: DemoSite, art: Article) -> random.Random:
    # Per page, so a page renders the same whether it was built with the site or added later.
    seed = site._gen.seed if site._gen else ""
    return random.Random(f"{seed}:page:{art.slug}")


@dataclass
class _PageParts:
    """Which other articles one page advertises, and where."""

    related: list[str]
    most_read: list[str]
    read_also: str | None
    read_also_at: int


def _page_parts(site: DemoSite, art: Article) -> _PageParts:
    rng = _page_rng(site, art)
    others = [a.slug for a in site.articles if a.slug != art.slug]
    related = rng.sample(others, min(len(others), rng.randint(4, 6)))
    # "Most read" repeats two or three related headlines, so those appear twice on the page.
    rest = [s for s in others if s not in related]
    most_read = related[: rng.randint(2, 3)] + rng.sample(rest, min(1, len(rest)))
    # About half the pages carry an inline "Read also: <headline>" between two paragraphs, as many CMSs do.
    read_also = rng.choice(related) if related and rng.random() < 0.5 else None
    return _PageParts(related, most_read, read_also, rng.randint(1, max(1, len(art.paragraphs) - 1)))


def _chrome(site: DemoSite, gen: _Generator) -> tuple[str, str]:
    lang, p = gen.lang, site.prefix
    nav = "".join(f'<li><a href="{p}/#{_slugify(item)}">{escape(item)}</a></li>' for item in lang.nav)
    header = (
        f'<div id="cookie-banner" class="cookie-banner" role="dialog"><p>{escape(lang.cookie)}</p>'
        f'<button type="button">{escape(lang.cookie_ok)}</button></div>\n'
        f'<header class="site-header"><a class="logo" href="{p}/">{escape(site.site_name)}</a>'
        f'<p class="tagline">{escape(lang.tagline)}</p>\n<nav class="main-nav"><ul>{nav}</ul></nav></header>\n'
    )
    links = "".join(f'<li><a href="{p}/#{_slugify(item)}">{escape(item)}</a></li>' for item in lang.footer)
    footer = (
        f'<footer class="site-footer"><ul>{links}</ul>'
        f"<p>© {_EPOCH.year} {escape(site.site_name)}, {escape(site.town)}. "
        f'<a href="{escape(site.feed_url)}">RSS</a></p></footer>\n'
    )
    return header, footer


def _render_article(site: DemoSite, art: Article) -> bytes:
    gen = site._require_gen()
    lang = gen.lang
    parts = _page_parts(site, art)
    url = site.article_url(art.slug)
    title = escape(art.title)
    published_iso = art.published.isoformat()
    updated_iso = (art.updated or art.published).isoformat()
    description = escape(art.paragraphs[0].split(". ")[0])
    time_html = f'<time datetime="{published_iso}">{_human_date(lang, art.published)}</time>'

    def link(slug: str) -> str:
        return f'<a href="{escape(site.article_url(slug))}">{escape(site.article(slug).title)}</a>'

    def teaser(tag: str, slug: str) -> str:
        # Plain text made clickable by script (data-href), as card-style CMS widgets do: no <a>, so
        # extractors' link-density filters do not drop it, just as they do not on real sites.
        target = escape(site.article_url(slug))
        return f'<{tag} class="c-item" data-href="{target}">{escape(site.article(slug).title)}</{tag}>'

    blocks = [f"<p>{escape(p)}</p>" for p in art.paragraphs]
    if parts.read_also:
        blocks.insert(parts.read_also_at, f'<p class="inline-ref"><strong>{escape(lang.read_also)}:</strong> '
                                          f"{link(parts.read_also)}</p>")
    body = "\n".join(blocks)
    related_html = "\n".join(teaser("li", s) for s in parts.related)
    most_read_html = "\n".join(teaser("p", s) for s in parts.most_read)
    latest_html = "".join(f"<li>{link(a.slug)}</li>" for a in site.articles[-5:][::-1] if a is not art)
    tags_html = " ".join(f'<meta property="article:tag" content="{escape(t)}">' for t in art.tags)
    page = f"""<!DOCTYPE html>
<html lang="{lang.code}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} | {escape(site.site_name)}</title>
<meta name="description" content="{description}">
<meta name="author" content="{escape(art.author)}">
<meta property="og:type" content="article">
<meta property="og:title" content="{title}">
<meta property="og:site_name" content="{escape(site.site_name)}">
<meta property="og:url" content="{escape(url)}">
<meta property="og:description" content="{description}">
<meta property="og:locale" content="{lang.code}">
<meta property="article:published_time" content="{published_iso}">
<meta property="article:modified_time" content="{updated_iso}">
<meta property="article:section" content="{escape(_topic(lang, art.topic).section)}">
{tags_html}
<link rel="canonical" href="{escape(url)}">
<link rel="alternate" type="application/rss+xml" title="{escape(site.site_name)}" href="{escape(site.feed_url)}">
</head>
<body class="article-page">
{gen.header_html}<main id="content" class="container">
<article class="post" itemscope itemtype="https://schema.org/NewsArticle">
<h1 class="entry-title" itemprop="headline">{title}</h1>
<p class="byline">{escape(lang.byline.format(author=art.author))} · {time_html}</p>
<p class="updated">{escape(_updated_line(lang, art))}</p>
<div class="entry-content" itemprop="articleBody">
{body}
<p class="follow">{escape(lang.follow)}</p>
<p class="share">{escape(lang.share)}</p>
<div class="c-block c-block--list"><h2>{escape(lang.related)}</h2>
<ul>
{related_html}
</ul></div>
<div class="c-block c-block--top"><h3>{escape(lang.most_read)}</h3>
{most_read_html}
</div>
</div>
</article>
<aside class="sidebar"><h2>{escape(lang.latest)}</h2><ul>{latest_html}</ul>
<p class="newsletter">{escape(lang.newsletter)}</p></aside>
</main>
{gen.footer_html}</body>
</html>
"""
    return page.encode("utf-8")


def _topic(lang: _Lang, key: str) -> _Topic:
    for topic in lang.topics:
        if topic.key == key:
            return topic
    return lang.topics[0]


def _render_index(site: DemoSite) -> bytes:
    gen = site._require_gen()
    items = "\n".join(
        f'<li><a href="{escape(site.article_url(a.slug))}">{escape(a.title)}</a> '
        f"<small>{_human_date(gen.lang, a.published)}</small></li>"
        for a in reversed(site.articles)
    )
    return (f'<!DOCTYPE html>\n<html lang="{gen.lang.code}">\n<head><meta charset="utf-8">'
            f"<title>{escape(site.site_name)}</title>"
            f'<link rel="alternate" type="application/rss+xml" href="{escape(site.feed_url)}"></head>\n'
            f'<body class="home">\n{gen.header_html}<main id="content"><ul class="teasers">\n{items}\n</ul></main>\n'
            f"{gen.footer_html}</body>\n</html>\n").encode()


def _render_feed(site: DemoSite) -> Response:
    gen = site._require_gen()
    entries = sorted(site.articles, key=lambda a: a.published, reverse=True)
    if site.feed_limit is not None:
        entries = entries[: site.feed_limit]
    items = []
    for a in entries:
        link = escape(site.article_url(a.slug))
        categories = "".join(f"<category>{escape(t)}</category>" for t in a.tags)
        items.append(
            f"<item><title>{escape(a.title)}</title><link>{link}</link>"
            f'<guid isPermaLink="true">{link}</guid>'
            f"<description>{escape(a.paragraphs[0].split('. ')[0])}</description>"
            f"<dc:creator>{escape(a.author)}</dc:creator>{categories}"
            f"<pubDate>{format_datetime(a.published, usegmt=True)}</pubDate></item>"
        )
    newest = max((a.published for a in site.articles), default=_EPOCH)
    last_modified = format_datetime(newest, usegmt=True)
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/">\n<channel>\n'
        f"<title>{escape(site.site_name)}</title>\n<link>{escape(site.url(site.index_path))}</link>\n"
        f"<description>{escape(gen.lang.tagline)}</description>\n<language>{gen.lang.code}</language>\n"
        f'<atom:link href="{escape(site.feed_url)}" rel="self" type="application/rss+xml"/>\n'
        f"<lastBuildDate>{last_modified}</lastBuildDate>\n"
        + "\n".join(items)
        + "\n</channel>\n</rss>\n"
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Response(body, "application/rss+xml; charset=utf-8",
                    headers={"ETag": etag, "Last-Modified": last_modified})


# ------------------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------------------


def _lang(language: str) -> _Lang:
    try:
        return LANGUAGES[language]
    except KeyError:
        raise ValueError(f"unsupported demo language {language!r}; choose from {sorted(LANGUAGES)}") from None


def _build(base_url: str, *, n_articles: int, seed: str, lang: _Lang, site_name: str | None, prefix: str,
           town: str | None, used_titles: set[str], used_sentences: set[str], towns: set[str],
           feed_limit: int | None) -> DemoSite:
    rng = random.Random(f"{seed}:site")
    town = town or _town_name(rng, lang, towns)
    gen = _new_generator(seed, lang, town, used_titles, used_sentences)
    site = DemoSite(
        base_url=base_url.rstrip("/"), prefix=prefix,
        site_name=site_name or (lang.site_name if not prefix else rng.choice(lang.site_name_patterns).format(
            town=town)),
        language=lang.code, town=town, routes={}, articles=[], feed_path=f"{prefix}/feed.xml",
        index_path=f"{prefix}/", feed_limit=feed_limit, _gen=gen,
    )
    gen.header_html, gen.footer_html = _chrome(site, gen)

    # Topics cycle in shuffled rounds so beats are spread evenly; the rail/harbour beats are made to recur
    # so their shared background paragraph appears in at least two articles.
    order: list[_Topic] = []
    while len(order) < n_articles:
        round_ = list(lang.topics)
        gen.rng.shuffle(round_)
        order.extend(round_)
    order = order[:n_articles]
    bg_topic = _topic(lang, gen.rng.choice(_BACKGROUND_TOPICS))
    if n_articles >= 3 and sum(t.key == bg_topic.key for t in order) < 2:
        slots = [i for i, t in enumerate(order) if t.key != bg_topic.key]
        for i in gen.rng.sample(slots, 2 - sum(t.key == bg_topic.key for t in order)):
            order[i] = bg_topic

    t = _EPOCH - timedelta(minutes=gen.rng.randint(0, 240))
    stamps: list[datetime] = []
    for _ in order:
        stamps.append(t.replace(second=0))
        t -= timedelta(minutes=gen.rng.randint(25, 420))
    stamps.reverse()
    seen_bg = 0
    for topic, published in zip(order, stamps, strict=True):
        # Most (not all) background-beat articles carry the background paragraph; the first two always do.
        with_bg = topic.background is not None and (seen_bg < 2 or gen.rng.random() < 0.6)
        seen_bg += topic.key == bg_topic.key and with_bg
        site.articles.append(_make_article(gen, topic, published, with_bg))

    for art in site.articles:
        site.routes[site.article_path(art.slug)] = Response(_render_article(site, art))
    site.routes[site.index_path] = Response(_render_index(site))
    site.routes[site.feed_path] = _render_feed(site)
    return site


def build_site(base_url: str, *, n_articles: int = 12, seed: int = 0, language: str = "en",
               site_name: str | None = None, prefix: str = "", feed_limit: int | None = None) -> DemoSite:
    """One generated news site whose absolute links start with ``base_url`` (e.g. ``server.url("")``).

    Routes: ``{prefix}/feed.xml`` (RSS 2.0, with ETag and Last-Modified), ``{prefix}/`` (index) and
    ``{prefix}/articles/{slug}.html``. ``site_name`` defaults to the language's ("The Harbour Gazette" in
    English), also when a ``prefix`` is given; ``feed_limit`` caps the feed to the newest N entries (pages
    stay served).
    """
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        raise ValueError(f"prefix must look like '/name', got {prefix!r}")
    lang = _lang(language)
    # build_many names prefixed sites after their town; a single site keeps the paper's well-known name.
    return _build(base_url, n_articles=n_articles, seed=str(seed), lang=lang,
                  site_name=site_name or lang.site_name, prefix=prefix, town=None, used_titles=set(),
                  used_sentences=set(), towns=set(), feed_limit=feed_limit)


def build_many(base_url: str | Callable[[int], str], n_sites: int, articles_per_site: int, seed: int = 0, *,
               language: str | Sequence[str] = "en", feed_limit: int | None = None) -> list[DemoSite]:
    """``n_sites`` distinct sites (own town, name, staff), routes prefixed ``/s{i}``, for benchmarks.

    ``base_url`` may be a function of the site index, to give sites different hosts and so different
    registered domains (e.g. ``lambda i: f"http://127.0.0.{i + 1}:{port}"`` with one server per address).
    ``language`` may be a sequence, cycled over the sites. Titles and sentences are unique across all sites.
    """
    languages = [language] if isinstance(language, str) else list(language)
    titles: set[str] = set()
    sentences: set[str] = set()
    towns: dict[str, set[str]] = {}
    sites = []
    for i in range(n_sites):
        lang = _lang(languages[i % len(languages)])
        base = base_url(i) if callable(base_url) else base_url
        sites.append(_build(base, n_articles=articles_per_site, seed=f"{seed}:{i}", lang=lang, site_name=None,
                            prefix=f"/s{i}", town=None, used_titles=titles, used_sentences=sentences,
                            towns=towns.setdefault(lang.code, set()), feed_limit=feed_limit))
    return sites


def all_routes(sites: Iterable[DemoSite]) -> dict[str, Response]:
    """The union of several sites' routes (their paths are disjoint when made by ``build_many``)."""
    routes: dict[str, Response] = {}
    for site in sites:
        routes.update(site.routes)
    return routes


def add_article(site: DemoSite, base_url: str | None = None, *, seed: int | None = None,
                topic: str | None = None, title: str | None = None, paragraphs: Sequence[str] | None = None,
                author: str | None = None, published: datetime | None = None,
                tags: Sequence[str] | None = None, routes: MutableMapping[str, Route] | None = None) -> Article:
    """Publish one more article on a live site: a new page, a new feed (new ETag and Last-Modified).

    Anything not given is generated: by default continuing the site's own sequence (deterministic for the
    site's seed and the number of earlier calls); with ``seed``, from that seed alone, so the same call on
    equal sites gives the same article. ``base_url``, when given and different from the site's, moves the
    whole site there first (every page and the feed are re-rendered with the new absolute links), e.g. after
    restarting the server on another port. ``published`` defaults to a little after the newest entry.
    Pass ``routes=server.routes`` to update a running server too; the page is mounted before the feed that
    links to it, so a concurrent poll never sees a dangling entry.
    """
    gen = site._require_gen()
    lang = gen.lang
    if base_url is not None and base_url.rstrip("/") != site.base_url:
        _rebase(site, base_url.rstrip("/"), routes)
    if seed is not None:
        # Draw this article from its own stream, and leave the site's sequence where it was.
        saved_rng, gen.rng = gen.rng, random.Random(f"{gen.seed}:add:{seed}")
        try:
            return add_article(site, topic=topic, title=title, paragraphs=paragraphs, author=author,
                               published=published, tags=tags, routes=routes)
        finally:
            gen.rng = saved_rng
    beat = _topic(lang, topic) if topic else gen.rng.choice(lang.topics)
    newest = max((a.published for a in site.articles), default=_EPOCH)
    when = published or newest + timedelta(minutes=gen.rng.randint(7, 90))
    art = _make_article(gen, beat, when, with_background=beat.background is not None and gen.rng.random() < 0.5)
    if title is not None:
        gen.used_titles.add(title)
        art.title, art.slug = title, _make_slug(gen, title)
    if paragraphs is not None:
        art.paragraphs = list(paragraphs)
    if author is not None:
        art.author = author
    if tags is not None:
        art.tags = list(tags)
    if art.updated is None or art.updated < when:
        art.updated = when
    site.articles.append(art)
    page_path = site.article_path(art.slug)
    site.routes[page_path] = Response(_render_article(site, art))
    site.routes[site.index_path] = Response(_render_index(site))
    site.routes[site.feed_path] = _render_feed(site)
    if routes is not None:
        for path in (page_path, site.index_path, site.feed_path):
            routes[path] = site.routes[path]
    return art


def _rebase(site: DemoSite, base_url: str, routes: MutableMapping[str, Route] | None) -> None:
    """Move a site to another origin: re-render everything, since pages and feed carry absolute links."""
    gen = site._require_gen()
    site.base_url = base_url
    gen.header_html, gen.footer_html = _chrome(site, gen)
    for art in site.articles:
        site.routes[site.article_path(art.slug)] = Response(_render_article(site, art))
    site.routes[site.index_path] = Response(_render_index(site))
    site.routes[site.feed_path] = _render_feed(site)
    if routes is not None:
        routes.update(site.routes)
