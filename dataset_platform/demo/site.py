"""The demo website: a small fictional news site, generated deterministically from our own templates.

``generate_site(out_dir)`` writes ``out_dir/site/`` (the document root served by
:class:`dataset_platform.demo.server.DemoServer`) and ``out_dir/manifest.json`` (not served), which
lists every path with its kind so tests can check what the pipeline did with each page.

Every word is produced here by a seeded :class:`random.Random` from sentence templates and
vocabularies written for this project; all names, places, firms and stories are invented. Template
syntax: ``[a|b|c]`` picks one alternative, ``{slot}`` is filled from the article's cast
(people, places, organisations) or a fresh number.

Besides ~200 good articles in English and Chinese over :data:`TOPICS`, the site plants what a
curation pipeline must handle: byte-identical mirrors, near duplicates, pages with (fictional)
e-mail addresses and phone numbers, keyword spam, near-empty pages, a robots.txt-disallowed area,
binary files and a broken link.
"""

from __future__ import annotations

import html
import json
import os
import random
import re
import shutil
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from dataset_platform import atomic

__all__ = ["KINDS", "SEED", "SITE_NAME", "TOPICS", "TOPIC_KEYWORDS", "generate_site", "keyword_hits"]

SEED = 20251101
SITE_NAME = "Demo Daily"
SITE_NAME_ZH = "演示日报"
TOPICS: tuple[str, ...] = ("science", "sports", "business", "technology", "culture")
#: Every ``kind`` a manifest entry can have.
KINDS: tuple[str, ...] = (
    "article", "exact_duplicate", "near_duplicate", "pii", "spam", "short", "private",
    "index", "category", "binary", "missing", "robots",
)
#: mtime given to every generated file, so Last-Modified is stable (2025-01-01T00:00:00Z).
FIXED_MTIME = 1735689600

N_ARTICLES = {"en": 140, "zh": 60}  # kind "article", spread evenly over TOPICS
N_PII = {"en": 6, "zh": 4}
N_MIRROR = {"en": 7, "zh": 3}
N_NEAR = {"en": 6, "zh": 4}
MISSING_PATH = "/articles/en/missing-page.html"
PDF_PATH = "/files/annual-report.pdf"
PNG_PATH = "/img/logo.png"

#: The distinctive words each topic's articles use (matched as lower-case substrings by the
#: keyword labeller). No template of another topic, and no shared template, contains them.
TOPIC_KEYWORDS: dict[str, dict[str, list[str]]] = {
    "science": {
        "en": ["researchers", "scientists", "laboratory", "experiment", "physics", "biology",
               "telescope", "molecules", "species", "peer-reviewed", "hypothesis", "chemistry"],
        "zh": ["科学家", "研究人员", "实验室", "实验", "物理", "生物", "望远镜", "分子", "物种", "论文"],
    },
    "sports": {
        "en": ["tournament", "championship", "coach", "season", "striker", "goalkeeper",
               "stadium", "athletes", "playoff", "referee", "midfield"],
        "zh": ["比赛", "球队", "教练", "冠军", "赛季", "运动员", "体育场", "进球", "联赛", "决赛"],
    },
    "business": {
        "en": ["revenue", "investors", "shareholders", "profit", "quarterly", "market", "startup",
               "merger", "retailer", "earnings", "customers", "supply chain"],
        "zh": ["公司", "市场", "投资者", "营收", "利润", "股东", "企业", "消费者", "零售", "季度"],
    },
    "technology": {
        "en": ["software", "smartphone", "algorithm", "encryption", "developers", "semiconductor",
               "cloud computing", "broadband", "open-source", "cybersecurity", "robotics",
               "machine learning", "data centre"],
        "zh": ["软件", "芯片", "算法", "人工智能", "智能手机", "数据中心", "网络安全", "开发者", "加密", "机器人"],
    },
    "culture": {
        "en": ["museum", "exhibition", "novel", "orchestra", "festival", "gallery", "painter",
               "theatre", "poetry", "sculpture", "choreographer", "artists"],
        "zh": ["博物馆", "展览", "艺术家", "小说", "音乐会", "乐团", "电影", "诗歌", "画家", "剧院"],
    },
}

TOPIC_LABELS = {
    "en": {"science": "Science", "sports": "Sports", "business": "Business",
           "technology": "Technology", "culture": "Culture"},
    "zh": {"science": "科学", "sports": "体育", "business": "商业", "technology": "科技", "culture": "文化"},
}

# --------------------------------------------------------------------------- shared vocabularies

FIRST_NAMES = (
    "Amelia", "Rahul", "Sofia", "Tomas", "Ingrid", "Kwame", "Mei", "Oliver", "Leila", "Mateo",
    "Hannah", "Yusuf", "Clara", "Dmitri", "Aisha", "Felix", "Nora", "Kenji", "Priya", "Lucas",
    "Elena", "Samuel", "Zara", "Jonas", "Ines", "Malik", "Freya", "Diego", "Ruth", "Arjun",
    "Lena", "Omar", "Greta", "Tariq", "Maya", "Emil", "Chloe", "Idris", "Vera", "Callum",
)
LAST_NAMES = (
    "Okafor", "Lindqvist", "Moreau", "Haddad", "Nakamura", "Brennan", "Castellano", "Osei",
    "Petrov", "Whitfield", "Kaur", "Fontaine", "Ibrahim", "Larsen", "Mendes", "Novak", "Quinlan",
    "Rossi", "Sato", "Thornton", "Varga", "Adeyemi", "Bergman", "Chandra", "Delgado", "Eriksen",
    "Farouk", "Gallagher", "Holm", "Iyer", "Jansen", "Kowalski", "Lindgren", "Marsh", "Nilsen",
    "Ortega", "Pereira", "Rahman", "Sandoval", "Tanaka",
)
# Invented towns.
CITIES = (
    "Ashford Bay", "Port Merrin", "Kellaway", "Dunmore", "Eastbrook", "Larkspur", "Marrowgate",
    "Northvale", "Redhaven", "Saltmere", "Thornbury", "Westcliff", "Brightwater", "Fenwick",
    "Glenhollow", "Highmoor", "Ironbridge", "Juniper Falls", "Kingsreach", "Lowfield", "Millbrook",
    "Oakhurst", "Pinecrest", "Quarry Hill", "Stonehaven", "Tidewell", "Upton Reach", "Wrenfield",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
NUM_WORDS = ("two", "three", "four", "five", "six", "seven", "eight", "nine")
ORDINALS = ("second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")

ZH_SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何林罗高"
ZH_GIVEN = (
    "思远", "雨桐", "嘉怡", "志强", "晓东", "海燕", "建华", "丽娟", "浩然", "子涵", "明轩", "欣怡",
    "文博", "佳琪", "宇航", "梦瑶", "俊杰", "婉清", "立新", "秀英", "国栋", "春燕", "天佑", "若兰",
)
ZH_CITIES = ("杭州", "成都", "西安", "青岛", "厦门", "昆明", "南京", "武汉", "长沙", "苏州",
             "大连", "贵阳", "兰州", "宁波", "合肥", "福州", "洛阳", "桂林", "烟台", "珠海")
ZH_WEEKDAYS = ("周一", "周二", "周三", "周四", "周五", "周六", "周日")
ZH_NUMS = ("两", "三", "四", "五", "六", "七", "八", "九")
ZH_ORDS = ("二", "三", "四", "五", "六", "七", "八")


@dataclass(frozen=True)
class TopicSpec:
    """Templates and cast of one topic in one language."""

    titles: tuple[str, ...]
    sentences: tuple[str, ...]
    quotes: tuple[str, ...]
    roles: tuple[str, ...]
    #: slot -> choices (may use {city}/{city2}); pairs like ("org", "org2") get distinct values
    cast: dict[str, tuple[str, ...]] = field(default_factory=dict)


# --------------------------------------------------------------------------- English templates

EN: dict[str, TopicSpec] = {
    "science": TopicSpec(
        titles=(
            "Researchers in {city} find new clues about {thing}",
            "Laboratory tests reveal surprising resilience in {thing}",
            "Scientists spend {n} years tracking {thing} near {city}",
            "A long experiment sheds light on {thing}",
            "What {thing} can tell scientists about a warming planet",
            "{city} researchers publish peer-reviewed study on {thing}",
            "Biology students help map {thing} around {city}",
            "The hidden chemistry of {thing}",
            "Telescope survey from {city} catches an unexpected signal",
            "Why {thing} matter more than scientists thought",
        ),
        sentences=(
            "Researchers at {org} [spent|needed|took] {n} months [collecting|gathering] samples of {thing} from {m} sites [around|near|outside] {city}.",
            "The experiment compared {thing} kept at normal temperatures with a second group exposed to {deg} degrees of extra warming.",
            "According to the peer-reviewed paper, {pct} of the samples [showed|displayed] changes the scientists had not predicted.",
            "{L} said the original hypothesis was that {thing} would [simply decline|fade away quietly], but the measurements told a more complicated story.",
            "[To save time|For speed], the team built a portable laboratory on a [small boat|converted van], so samples could be analysed within hours.",
            "Several species appear to [cope with|survive] [stress|heat|drought] by slowing their growth, a strategy that biology textbooks [rarely|seldom] [mention|describe].",
            "A mass spectrometer [identified|picked out] {m} molecules that had never been recorded in samples from {city}.",
            "The physics behind the process is [well understood|no mystery], yet its effect on living [organisms|things] has been [hard|difficult] to measure outside a laboratory.",
            "Every sample was photographed, weighed and frozen before being [shipped|sent] to a partner laboratory in {city2}.",
            "Other scientists [cautioned|warned] that the experiment ran for only {n} months and that longer records are needed.",
            "The researchers now want to repeat the experiment at {m} [additional|further] sites with different soils and water chemistry.",
            "[Funding|Money] for the project came from a public science fund and a [small|modest] grant from {org}.",
            "{Q}, {S} who was not involved in the study, called the [results|findings] [intriguing|promising] but [preliminary|early].",
            "The team also found that {thing2} [nearby|in the same area] responded [in the opposite way|far more slowly], which puzzled the scientists.",
            "Using a [borrowed|second-hand] telescope, [volunteers|students] logged {big} observations over {n} [clear nights|months].",
            "The raw data and the laboratory notebooks [will be|are being] published [online|openly] so that other researchers can check the analysis.",
            "Chemistry tests showed that the water near {city} [carried|contained] {deg} times more dissolved [iron|nitrogen|calcium] than expected.",
            "In the [first|second|third] phase of the experiment, {m} [undergraduates|volunteers] counted species along [fixed|marked] transects every week.",
            "The [findings|results] [challenge|complicate] a hypothesis [first proposed|put forward] by scientists in {city2} in {year}.",
            "{L}'s team [measured|recorded] the [temperature|acidity|salt content] of the water every {n} hours for a [full|whole] year.",
            "Biology [students|graduates] from {org} [helped|assisted] with the fieldwork, [learning|practising] how to identify species by their [calls|leaves|shells].",
            "Back in the laboratory, each [sample|specimen] was [sequenced|analysed] to see which genes [switched on|became active] under stress.",
            "[Surprisingly|Unexpectedly], the hardiest {thing} came from the [coldest|windiest|saltiest] of the {m} sites, the researchers reported.",
        ),
        quotes=(
            "\"We [expected|assumed] a [simple|clean] answer, and [nature|the data] gave us a [messy|much richer] one,\" said {P}, {R} at {org}.",
            "\"This is [the first time|one of the first times] anyone has [measured|recorded] this in the field,\" {L} said.",
            "\"The laboratory results and the field results finally [agree|line up],\" said {Q}, {S}.",
            "\"A good experiment [raises|opens up] more questions than it answers,\" {L} [added|noted].",
            "\"Without the volunteers, we would have [covered|sampled] a fraction of the sites,\" said {P}.",
            "\"We need [longer|bigger] data sets before anyone rewrites the textbooks,\" {Q} said.",
        ),
        roles=("a marine biologist", "a physicist", "a senior researcher", "the study's lead author",
               "an ecologist", "a chemistry professor", "a doctoral student", "a field biologist"),
        cast={
            "org": ("the {city} Institute of Marine Science", "the University of {city}",
                    "the {city} Field Research Station", "the National Physics Laboratory in {city}",
                    "the {city} Botanical Research Centre", "the Observatory at {city}"),
            "thing": ("coral reefs", "soil microbes", "migrating songbirds", "deep-sea sponges", "wild bees",
                      "river plankton", "ancient pollen grains", "cave-dwelling fish", "desert lichens",
                      "sea-ice algae", "tree frogs", "comet dust grains", "groundwater bacteria",
                      "alpine wildflowers", "kelp forests", "freshwater mussels"),
        },
    ),
    "sports": TopicSpec(
        titles=(
            "{team} beat {rival} to reach the {sport} playoff final",
            "Late goal keeps {team} in the championship race",
            "{team} coach {P} rebuilds a young squad",
            "Rain, nerves and a record crowd: {team} edge past {rival}",
            "{rival} stun {team} in front of a packed stadium",
            "Young athletes from {city} shine at national {sport} tournament",
            "{team} name a new captain ahead of the season",
            "Referee decision sparks debate after {team} draw with {rival}",
            "How {team} turned a losing season into a title challenge",
        ),
        sentences=(
            "{team} [beat|edged past|overcame] {rival} {score} on {weekday}, [extending|stretching] their unbeaten run to {n} games.",
            "The [striker|winger|captain] {Q} scored twice in the second half, [including|capped by] a header from a corner in the {minute} minute.",
            "Coach {P} [made|used] {n} substitutions and switched to a [back three|narrow diamond] in midfield after the break.",
            "More than {big} fans [filled|packed] the stadium in {city}, the largest crowd of the season so far.",
            "The goalkeeper [made|produced] {n} [saves|stops], one of them a [diving|fingertip] save from a [free kick|penalty] late in the game.",
            "The referee [showed|handed out] {n} yellow cards and [waved away|ignored] [two|three] penalty appeals from the [visitors|away side].",
            "[With|After] this result, {team} [sit|stay] {pos} in the table, {n} points behind the leaders with {n2} rounds of the season left.",
            "{rival} had [won|taken] the [previous|last] {n} meetings between the [clubs|sides], so the win [ended|broke] a long [drought|losing streak].",
            "The athletes trained [twice|three times] a day during a [short|brief|ten-day] camp in {city2} before the tournament.",
            "The championship [resumes|continues] next {weekday} when {team} travel to {city2} for a [difficult|tricky] away fixture.",
            "Injuries to {n} regular starters forced the coach to [field|select] a [young|makeshift] side for the playoff.",
            "{Q}, who joined from {rival} before the season, [has now scored|now has] {m} goals in all competitions.",
            "[Statistics|Figures] from the game show that {team} [had|enjoyed] {pct} of possession and [attempted|took] {m} shots.",
            "The stadium, [rebuilt|renovated] in {year}, now holds {big} spectators and [has|features] a new [roof|pitch].",
            "Ticket [prices|sales] for the playoff [rose|jumped] after the [semi-final|quarter-final] sold out in under {n} hours.",
            "The tournament [brings together|gathers] {m} teams from across the region, and the winner qualifies for the national championship.",
            "{P} [played|spent] {n} seasons as a defender before [becoming|turning] coach, and [likes|prefers] a [patient|pressing] style.",
            "The home side [scored|struck] first through a [low shot|curling strike] from the edge of the box, [but|yet] {rival} [levelled|equalised] before half-time.",
            "Fans [sang|chanted] through the [final|closing] minutes as the referee added {n} minutes of stoppage time.",
            "Training [resumes|starts again] on {weekday} morning, and the coach [expects|hopes] to have the [captain|goalkeeper] back for the next [round|fixture].",
            "[Both|The two] sets of athletes [looked|seemed] tired in the heat, and the referee [allowed|called] a drinks break midway through each half.",
            "{team} [have|now have] [kept|recorded] {n} clean sheets this season, more than any other side in the championship.",
        ),
        quotes=(
            "\"We [defended|worked] as a team for [ninety|all ninety] minutes, and that is what wins a championship,\" said coach {P}.",
            "\"The [crowd|fans] carried us through the last ten minutes,\" {Q} said.",
            "\"I told the players at half-time to trust the plan,\" {L} said. \"They did.\"",
            "\"Nobody gave us a chance this season, and now we are in the playoff,\" said {Q}, the [striker|captain].",
            "\"It was a fair result, even if the referee missed a [clear|obvious] foul,\" [admitted|conceded] {Q}.",
            "\"Every [point|game] [matters|counts] from here,\" the coach [said|added].",
        ),
        roles=("the club captain", "a former goalkeeper", "a sports commentator", "the assistant coach",
               "a physiotherapist", "a youth coach"),
        cast={
            "team": ("{city} Rovers", "{city} Harriers", "{city} Falcons", "{city} Wanderers", "{city} Mariners",
                     "{city} Kestrels", "{city} Otters", "{city} Pioneers"),
            "rival": ("{city2} Rangers", "{city2} Stags", "{city2} Comets", "{city2} Foxes", "{city2} Herons",
                      "{city2} Badgers", "{city2} Lancers", "{city2} Ospreys"),
            "sport": ("football", "basketball", "hockey", "volleyball", "handball", "rugby", "water polo"),
        },
    ),
    "business": TopicSpec(
        titles=(
            "{co} reports [higher|record] quarterly revenue as demand for {thing} grows",
            "Investors cheer {co} plan to expand into {city}",
            "{co} and {co2} agree merger worth {money}",
            "Retailer {co} cuts prices on {thing} to win back customers",
            "Startup from {city} raises {money} to sell {thing} online",
            "Shareholders question pay at {co} after weak earnings",
            "Supply chain delays hit makers of {thing} in {city}",
            "{co} shares fall after a profit warning",
            "Why small firms in {city} are betting on {thing}",
        ),
        sentences=(
            "{co} [said|reported] that quarterly revenue [rose|climbed] {pct} to {money}, [helped by|driven by] strong sales of {thing}.",
            "Profit before tax [came in at|reached] {money2}, [slightly above|just below] what [analysts|investors] had [expected|forecast].",
            "Shares in the company [rose|jumped|slipped] {pct2} in early trading on {weekday}.",
            "The retailer [plans to|intends to] open {n} new stores in {city} and {city2} over the next [two years|eighteen months].",
            "Chief executive {P} told investors that the [supply chain|shipping] problems of {year} were [largely over|mostly behind the firm].",
            "[Customers|Shoppers] have [shifted|moved] towards cheaper {thing}, [squeezing|eroding] margins across the market.",
            "The merger, if approved by regulators, would create the [largest|second-largest] supplier of {thing} in the region.",
            "{Q}, {S}, said the earnings [looked|were] [solid|respectable] but [warned|cautioned] that costs for energy and wages [remain|are still] high.",
            "The startup [was founded|began] in a [garage|spare bedroom] in {city} in {year} and now employs {m} people.",
            "Shareholders will vote on the [deal|proposal] at the annual meeting in {month}.",
            "About {pct} of revenue now comes from online orders, up from [a fifth|a tenth] [two|three] years ago.",
            "The company [kept|held] its dividend [unchanged|steady] and [announced|launched] a share buyback worth {money2}.",
            "Rival {co2} [cut|lowered] its [full-year|annual] forecast last [month|quarter], [blaming|citing] weak demand and higher [rents|freight costs].",
            "[Suppliers|Farmers] in {city2} said the [new|larger] contract would [guarantee|secure] orders for at least {n} years.",
            "The market for {thing} [grew|expanded] by {pct} last year, according to a trade [association|group] in {city}.",
            "To [cut|reduce] costs, {co} [moved|shifted] its warehouse from {city2} to a cheaper site [near|outside] {city}.",
            "Investors [were|had been] [worried|nervous] about debt, which [stood at|totalled] {money} at the end of the quarter.",
            "Quarterly earnings per share [rose|increased] to {cents} cents, compared with {cents2} cents a year earlier.",
            "The retailer [also|additionally] [said|confirmed] it would [raise|increase] pay for [warehouse|store] staff by {pct2}.",
            "[Small|Independent] shops in {city} [say|complain] the [chain|group]'s discounts make it hard to compete on price.",
            "[Analysts|Brokers] at {bank} [raised|lifted] their price target for {co}, [pointing to|citing] a [stronger|healthier] order book.",
            "{co} [expects|forecasts] full-year profit [of about|close to] {money}, [assuming|provided] demand for {thing} holds up.",
        ),
        quotes=(
            "\"Our customers told us what they wanted, and we [listened|followed them],\" said {P}, chief executive of {co}.",
            "\"The numbers are [good|decent], but the market is not out of the woods yet,\" {Q} said.",
            "\"We are [building|investing] for the next ten years, not the next quarter,\" {L} told investors.",
            "\"Margins will stay [tight|thin] while freight costs remain this high,\" said {Q}, {S}.",
            "\"This merger [gives|offers] shareholders [scale|a stronger balance sheet] at the right moment,\" {L} said.",
            "\"A startup has to [earn|win] trust one order at a time,\" said {P}.",
        ),
        roles=("an analyst at {bank}", "the finance director", "a retail consultant", "a fund manager",
               "the head of a trade body", "a former board member"),
        cast={
            "co": ("Brightline Foods", "Copperleaf Home", "Meridian Textiles", "Northstar Freight",
                   "Bluegate Furniture", "Harbourside Grocers", "Kestrel Paper", "Amberfield Coffee",
                   "Silverbirch Outdoor", "Cobalt Bay Insurance"),
            "co2": ("Greystone Retail", "Willowmere Brands", "Tallpine Supplies", "Redwharf Trading",
                    "Sunhollow Goods", "Larchmont Packaging", "Fairhaven Stores", "Oakmere Holdings"),
            "bank": ("{city} Capital", "Larkmoor Securities", "Eastgate Partners", "Holloway Brokers"),
            "thing": ("frozen meals", "office furniture", "bicycle parts", "organic coffee", "home insurance",
                      "packaging", "children's clothing", "garden tools", "regional flights", "craft beer",
                      "pet food", "work boots"),
        },
    ),
    "technology": TopicSpec(
        titles=(
            "{tco} unveils {thing} built around a new algorithm",
            "Software update fixes a security flaw in {thing}",
            "Developers in {city} build open-source tools for {thing}",
            "Semiconductor shortage slows production of {thing}",
            "{city} gets faster broadband as fibre reaches {big} homes",
            "How machine learning is changing {thing}",
            "Cybersecurity experts raise concerns about {thing}",
            "New data centre near {city} promises greener cloud computing",
            "Robotics firm {tco} opens a test site in {city}",
            "Smartphone makers bet on {thing}",
        ),
        sentences=(
            "{tco} [said|announced] the [new|latest] software update for {thing} [fixes|addresses] {n} security flaws [found|reported] by outside developers.",
            "The algorithm [runs|works] entirely on the device, so [recordings|messages|photos] never [leave|have to leave] the smartphone.",
            "End-to-end encryption is [switched on|enabled] by default, [a change|something] privacy groups had [requested|asked for] for years.",
            "The company [trained|built] the machine learning model on {big} [anonymised|labelled] examples collected with [consent|permission].",
            "A shortage of semiconductor [parts|components] [delayed|held up] the launch by {n} months, [according to|said] {P}.",
            "The data centre near {city} [will be|is] cooled with [outside air|water from a nearby canal] and [powered|run] [largely|mostly] by wind.",
            "Developers can [download|inspect] the open-source code, and {m} [volunteers|contributors] have already [submitted|sent] improvements.",
            "Average broadband speeds in {city} [rose|jumped] to {mbps} megabits per second after the fibre upgrade.",
            "Cybersecurity [experts|specialists] [advise|recommend] users to install the update [as soon as possible|promptly] and to [change|reset] their passwords.",
            "The robotics [team|group] at {tco} [spent|needed] {n} [years|months] teaching an arm to [pick up|sort] [fragile|oddly shaped] objects.",
            "[Early|Initial] [testers|reviewers] [praised|liked] the battery life but said the software still [crashes|freezes] [occasionally|now and then].",
            "Cloud computing [costs|bills] [fell|dropped] by {pct} for [small firms|schools] that [moved|switched] to the new service.",
            "The smartphone [version|edition] [will arrive|is due] in {month}, [followed by|with] a [desktop|tablet] version later in the year.",
            "{Q}, {S}, said the [design|approach] [trades|swaps] a little speed for [much|far] better privacy.",
            "[Independent|Outside] [auditors|testers] found that the encryption [held up|stood up] against {n} common attacks.",
            "The [firm|team] [plans|hopes] to release the algorithm under an open-source licence so [other|rival] developers can [check|audit] it.",
            "Older devices [will|are going to] stop receiving [updates|security patches] in {year2}, which [worries|concerns] some users.",
            "Engineers [rewrote|redesigned] the [networking|storage] layer of the software in a [safer|memory-safe] language.",
            "[About|Roughly] {pct} of [users|owners] [had|have] [turned on|enabled] automatic updates, according to {tco}.",
            "A [pilot|trial] in {city2} [connected|linked] {m} schools to broadband through [new|upgraded] [fibre|rooftop antennas].",
            "The {thing} [now|also] [use|rely on] a smaller machine learning model, which [cuts|halves] the energy needed for each [request|task].",
            "{tco} [said|claims] its newest semiconductor design [uses|draws] {pct} less power than the previous [generation|model].",
        ),
        quotes=(
            "\"Privacy should not be a premium feature,\" said {P}, {R} at {tco}.",
            "\"We [found|caught] the bug before attackers did, which is the best outcome,\" {L} said.",
            "\"Good software [is|gets] boring in the best possible way: it just works,\" {Q} said.",
            "\"The hard part is not the algorithm, it is the data,\" said {Q}, {S}.",
            "\"Developers [want|need] tools they can inspect and fix themselves,\" {L} [said|added].",
            "\"Nobody should need a manual to turn on encryption,\" said {P}.",
        ),
        roles=("a software engineer", "the company's head of security", "a cybersecurity consultant",
               "a product manager", "an open-source maintainer", "a network engineer"),
        cast={
            "tco": ("Quillbyte", "Nimbus Works", "Vantacore", "Pixelhaven", "Ferrolink", "Opalwave",
                    "Corvid Systems", "Tesselate", "Brightgrid", "Lumenforge"),
            "thing": ("home routers", "voice assistants", "password managers", "smartwatches", "e-readers",
                      "delivery drones", "video-calling tools", "navigation apps", "photo-editing tools",
                      "smart thermostats", "translation earbuds"),
        },
    ),
    "culture": TopicSpec(
        titles=(
            "{venue} opens an exhibition of {thing}",
            "A first novel about {city} finds its readers",
            "{city} festival celebrates {thing} with {n} free events",
            "Painter {P} returns to {city} with new work",
            "Why the {city} orchestra plays in car parks",
            "Poetry night in {city} draws a surprising crowd",
            "Sculpture trail brings {thing} to the streets of {city}",
            "Theatre company revives a forgotten comedy in {city}",
            "Gallery in {city} gives {thing} a new home",
        ),
        sentences=(
            "The exhibition [brings together|gathers] {m} works, [many|most] of them [loaned|borrowed] from private collections in {city2}.",
            "The painter [spent|worked] {n} years on the [series|cycle], [working|painting] mostly at night in a [rented|borrowed] studio.",
            "[Visitors|Guests] [enter|begin] through a [dark|narrow] corridor lined with {thing}, before reaching the [main|central] gallery.",
            "The novel [follows|traces] a [ferry pilot|night-shift baker|retired teacher] in {city} over a single [winter|summer] in {year}.",
            "The festival [runs|continues] until {weekday} and [includes|offers] {m} [concerts|readings|screenings], [most|many] of them free.",
            "The city orchestra [will play|performs] a [new|specially written] piece by {Q} [alongside|together with] [two|three] [familiar|well-known] symphonies.",
            "Poetry [readings|evenings] at the [library|old fire station] [now|regularly] [draw|attract] {m} people, [up from|compared with] a handful [two years ago|at the start].",
            "The sculpture, [made|cast] from [recycled|salvaged] [bronze|steel|copper], [stands|rests] [outside|beside] the museum entrance.",
            "[Critics|Reviewers] [praised|admired] the [staging|costumes] but found the [second act|ending] [too long|rushed].",
            "The theatre [received|won] a [grant|donation] of {money} to [repair|restore] its [roof|seating] [before|ahead of] the [new|coming] programme.",
            "Curator {P} [said|explained] that the museum [wanted|hoped] to show {thing} [the way|as] [ordinary|local] people [saw|lived with] them.",
            "Tickets for the opening [night|weekend] [sold out|were gone] within {n} hours, so the gallery [added|opened] extra [evening|morning] slots.",
            "The choreographer [worked|rehearsed] with {m} dancers, [half|some] of them [students|amateurs] from {city}.",
            "[Local|Young] artists [painted|decorated] {m} [shutters|benches|walls] [along|around] the [harbour|old high street] for the festival.",
            "The museum [is|will be] free on the first {weekday} of every month [until|through] {month}.",
            "[Written|Composed] in {year}, the [play|score] was [forgotten|lost] for decades until {Q} [found|discovered] it in an archive in {city2}.",
            "A [small|modest] exhibition of {thing2} [runs|opens] [alongside|next door], [curated|organised] by students from {city}.",
            "The novel [has sold|sold] {big} copies and [is being|has been] translated into {n} languages.",
            "[Audiences|Crowds] at the theatre [gave|offered] the [cast|company] a standing ovation on the [first|opening] night.",
            "The gallery [plans|hopes] to [tour|take] the exhibition to {city2} and {n} other [towns|cities] next year.",
            "{venue} [has|now has] a [reading room|print studio] where [visitors|schoolchildren] can [handle|copy] {thing} under supervision.",
            "The painter [mixes|grinds] [her|their] own pigments from [river clay|crushed shells|local stone], a habit [learned|picked up] in {city2}.",
        ),
        quotes=(
            "\"I wanted people to [slow down|look twice] and really look,\" said the painter {P}.",
            "\"A museum should feel like a [living room|public square], not a bank vault,\" {L} said.",
            "\"Poetry is just [paying attention|careful listening], out loud,\" said {Q}, who [organises|hosts] the readings.",
            "\"The festival [belongs|has always belonged] to the town, not to us,\" said {Q}, {S}.",
            "\"Every night the orchestra [finds|discovers] something new in the [score|music],\" {L} said.",
            "\"The best exhibition is the one you want to visit twice,\" said {P}, {R}.",
        ),
        roles=("the museum's curator", "a theatre director", "a poet", "the festival director",
               "a music critic", "a novelist", "a sculptor"),
        cast={
            "venue": ("The {city} Museum of Art", "The Old Granary Gallery in {city}", "The {city} Playhouse",
                      "The Riverside Theatre in {city}", "The {city} Concert Hall", "The Lantern House museum in {city}"),
            "thing": ("river landscapes", "woodcut prints", "handmade puppets", "folk songs", "silent films",
                      "ceramic bowls", "street photography", "textile portraits", "harbour paintings",
                      "old shop signs", "paper lanterns", "glass mosaics"),
        },
    ),
}

# Shared sentences: no topic keyword may appear in them.
EN_GENERIC: tuple[str, ...] = (
    "Local officials in {city} [said|confirmed] they would [publish|release] a fuller [report|account] by {month}.",
    "[Residents|People] in {city} had [mixed|varied] reactions, with some [welcoming|praising] the news and others [asking|wanting] more detail.",
    "The [figures|numbers] [cover|refer to] the [first|second] half of {year}.",
    "[Asked about|On] the [timing|schedule], a spokesperson said [further|more] [details|information] would follow [in the coming weeks|later this year].",
    "{Q}, who has lived in {city} for {m} years, said the news [came as|was] little surprise.",
    "[None of this|Not all of this] [happened|came about] overnight, and [several|a number of] people [involved|close to the work] stressed that [progress|change] had been slow.",
    "[A public meeting|An open evening] [is planned|will be held] in {city} on {weekday}, [where|at which] [questions|concerns] can be raised.",
    "The weather [did not help|made things harder]: heavy rain [closed|flooded] [two|several] roads [around|near] {city} during the [first|second] week.",
    "[Some|Several] [details|points] [remain|are still] [unclear|undecided], including who will pay for the next stage.",
    "[Earlier|Previously], a similar [effort|plan] in {city2} [stalled|ran out of money] after [less than|barely] a year.",
    "[For now|At the moment], the [focus|priority] is on [keeping|making] things simple and [affordable|practical].",
    "[Many|Most] of the people [involved|taking part] [are|were] volunteers who [gave up|gave] their [evenings|weekends] to help.",
    "The [regional|local] council [has|had] promised to [review|revisit] the [plans|arrangements] [after|before] the summer.",
    "[Copies|Printed copies] of the [report|plan] [can be|are] [requested|picked up] at the town hall in {city}.",
    "[It|This] is not the first time {city} has [made headlines|drawn attention] for [this kind of|such] [work|effort].",
    "[A long-time|One long-standing] resident, {Q}, [recalled|remembered] when the [street|neighbourhood] looked [very|quite] different.",
    "[Transport|Bus] links [to|around] {city} [will be|are being] [improved|expanded] [next|over the next] year, which [organisers|planners] hope will help.",
    "[The|That] [decision|announcement] [followed|came after] {n} months of [discussion|talks] and [several|two] [false starts|delays].",
    "[Critics|Sceptics] [argue|say] that the [money|effort] could have been [spent|used] [elsewhere|better], [a view|an argument] {L} [rejects|disputes].",
    "[By|Around] {hour} o'clock on {weekday} [evening|morning], [a queue|a small crowd] had already formed [outside|by the entrance].",
    "Younger people in {city} [appear|seem] [especially|particularly] [keen|interested], [according to|judging by] an informal [survey|poll] of {big} [people|households].",
    "The [next|following] [update|progress report] is [expected|due] in {month}, when [officials|organisers] [plan to|will] [publish|share] [fresh|updated] figures.",
    "[Nearby|Neighbouring] {city2} is [watching|following] [closely|with interest] and [may|could] [try|adopt] a similar [approach|idea].",
    "[Everyone|All those] [interviewed|spoken to] for this [article|story] agreed on one thing: the [next year|coming months] will be [decisive|important].",
    "[Records|Archives] kept at the {city} library [show|suggest] that the [question|issue] was [first|already] debated [in|around] {year}.",
    "[Parking|Traffic] [near|around] the [site|venue] [is|remains] limited, and [visitors|people] are [asked|encouraged] to [walk|cycle] or take the bus.",
    "[In|During] a [short|brief] [interview|conversation], {Q} [described|summed up] the [last|past] few months as [exhausting|intense] but [worthwhile|rewarding].",
    "A [spokesperson|representative] for the [regional|local] government [declined|refused] to [comment|say more] on the [cost|figures].",
)

# --------------------------------------------------------------------------- Chinese templates

ZH: dict[str, TopicSpec] = {
    "science": TopicSpec(
        titles=(
            "{city}研究人员发现{thing}的新线索",
            "实验室测试揭示{thing}的惊人适应力",
            "科学家连续{n}年追踪{city}附近的{thing}",
            "一项长期实验解释{thing}如何度过寒冬",
            "{city}团队发表关于{thing}的新论文",
            "生物系学生协助绘制{city}的{thing}分布图",
            "{thing}背后隐藏的化学秘密",
            "{city}天文台的望远镜捕捉到意外信号",
        ),
        sentences=(
            "{org}的研究人员[花了|用了]{n}个月，在{city}[周边|附近]的{m}个地点[采集|收集]{thing}样本。",
            "这项实验把{thing}分成两组，一组保持[正常|原有]温度，另一组[额外|人为]升温{deg}摄氏度，[持续|为期]{n}个月。",
            "[根据|按照]已发表的论文，约{pct}的样本出现了[科学家|研究团队]事先[没有预料到|未曾预料]的变化。",
            "{L}说，[最初的|团队最初的]假设是{thing}会[逐渐减少|慢慢消失]，但测量结果显示[情况要复杂得多|事情并非如此简单]。",
            "为了节省时间，团队在一[艘小船|艘旧渔船|辆改装货车]上搭建了流动实验室，样本采集后{n}个小时内就能完成分析。",
            "一些物种似乎[通过|靠]放慢生长来[应对|抵御]压力，这种策略在生物教科书[中|里][很少|极少]被提及。",
            "质谱仪在{city}的样本中[识别出|找到了]{m}种此前从未记录过的分子。",
            "这一过程背后的物理原理[早已清楚|并不复杂]，但它对生物体的影响在实验室[外|以外]一直[难以|很难]测量。",
            "每份样本都[经过|先后经过]拍照、称重和冷冻，然后[被送往|被运到|统一寄往]{city2}的[合作|合作方]实验室。",
            "其他科学家[提醒|指出]，这项实验只[持续了|进行了]{n}个月，还需要[更长时间的记录|更多年份的数据]。",
            "研究人员[计划|打算|准备]在另外{m}个地点重复这项实验，那里的[土壤和水质|气候和土壤|水温和盐度]各不相同。",
            "{Q}[并未|没有]参与这项研究，这位{S}认为结果[很有意思|令人鼓舞]，但[仍属初步|还需验证]。",
            "在[同一区域|附近水域|同一片山坡]，{thing2}的反应却[恰好相反|慢得多]，这让科学家们[感到困惑|百思不解]。",
            "[志愿者|学生]们借用一台[旧|二手]望远镜，在{n}个[月|晴朗的夜晚]里记录了{big}次观测。",
            "原始数据和实验[记录|笔记]将[全部|陆续]公开，[方便|以便]其他研究人员[核查|复核]分析过程。",
            "化学检测显示，{city}附近[水体|河段|湖泊]中溶解的[铁|氮|钙]含量是[预期的|往年的]{deg}倍。",
            "{L}的团队每隔{n}个小时测量一次[水温和酸碱度|水温和盐度|土壤湿度]，[整整|足足]坚持了[一年|{n}个月]。",
            "[回到|运回]实验室后，每份[标本|样品]都[经过|做了]基因测序，以[确定|弄清]哪些基因在[压力|高温|缺氧]下被激活。",
            "[令人意外的是|出人意料的是]，最耐寒的{thing}来自{m}个地点中[最冷|风最大]的那一个。",
            "这项研究的经费[来自|主要来自]一个公共科学基金，以及{org}提供的一笔[小额|少量]资助。",
            "[野外|实地]调查[期间|过程中]，研究人员[遇到了|碰上了]{n}场[暴风雨|寒潮]，有{m}个[采样点|观测点]不得不[推迟|暂停]。",
            "团队给{m}只{thing}[佩戴|安装]了[微型|轻便的]传感器，[每隔|每]{n}分钟[记录|回传]一次数据。",
            "[显微镜下|放大之后]，{thing}的细胞[排列|结构][出奇地|异常]整齐，这让{L}[想起了|联想到]{year}年的一项[旧|早期]研究。",
            "{city2}的一个[研究小组|实验团队]用[不同的|另一种]方法[得出了|拿到了][相似|相近]的结论，这让[结果|结论]更加可信。",
            "[为了|为]排除[偶然因素|误差]，每组实验都[重复了|做了]{n}遍，[样本|数据]总量超过{big}份。",
            "[这篇|该]论文[已于|在]{month}月[发表在|刊登于]一份[同行评审|国际]期刊上，[共有|署名作者有]{m}位作者。",
            "[有|还有]学者[质疑|担心]，{thing}[在实验室里|在人工环境中]的表现[未必|不一定]能代表[野外|自然]状态。",
            "{org}[打算|计划]明年[开放|公开]部分实验室，[让|邀请][中学生|公众]参与[样本整理|物种识别]。",
        ),
        quotes=(
            "“我们原以为答案会很[简单|直接]，结果[大自然|数据]给了我们一个[复杂得多|丰富得多]的答案。”{org}的{R}{P}说。",
            "“这是[第一次|少数几次之一]有人在野外测量到这种现象。”{L}说。",
            "“一个好的实验，提出的问题往往比[回答的|解决的]问题更多。”{L}[补充道|笑着说]。",
            "“没有志愿者的帮助，我们只能[覆盖|调查]很少一部分地点。”{P}说。",
            "“实验室的结果和野外的结果终于[对上了|吻合了]。”{S}{Q}说。",
            "“在有人改写教科书之前，我们还需要[更长期|更大规模]的数据。”{Q}说。",
        ),
        roles=("海洋生物学家", "物理学家", "高级研究员", "论文第一作者", "生态学家", "化学教授", "博士研究生"),
        cast={
            "org": ("{city}海洋科学研究所", "{city}大学", "{city}野外观测站", "国家物理实验室{city}分部", "{city}植物研究中心"),
            "thing": ("珊瑚礁", "土壤微生物", "迁徙鸣禽", "冰川融水", "深海海绵", "野生蜜蜂", "河流浮游生物",
                      "古代花粉", "洞穴鱼类", "高山野花", "海藻林", "淡水贻贝"),
        },
    ),
    "sports": TopicSpec(
        titles=(
            "{team}击败{rival}，晋级{sport}决赛",
            "补时阶段进球，{team}保住冠军希望",
            "{team}主教练{P}重建年轻阵容",
            "大雨中的较量：{team}险胜{rival}",
            "{rival}爆冷击败{team}，体育场内一片沉寂",
            "{city}年轻运动员在全国{sport}比赛中崭露头角",
            "新赛季开始前，{team}任命新队长",
            "裁判判罚引发争议，{team}与{rival}战平",
        ),
        sentences=(
            "{team}在{weekday}[以|凭借]{score}[击败|战胜]{rival}，[将|把]不败纪录延续到{n}场。",
            "前锋{Q}在下半场梅开二度，其中一球是第{minute}分钟的[角球头槌破门|禁区外远射]。",
            "主教练{P}在比赛中[换下|调整了]{n}名球员，并在下半场[调整了|改变了]中场[阵型|站位]。",
            "超过{big}名球迷[涌入|挤满了]{city}的体育场，[这是|创下了]本赛季[迄今为止最多的一次|上座人数新高]。",
            "门将全场完成{n}次扑救，其中[包括|最精彩的是]终场前扑出的一记[点球|任意球]。",
            "裁判[出示了|共出示]{n}张黄牌，还[驳回了|没有理会]客队的[两|三]次点球申诉。",
            "这场胜利过后，{team}积分榜排名第{pos}，距离领头羊还有{n}分，赛季还剩{n2}轮。",
            "此前{n}次交手，{rival}[全部获胜|一场未输]，这场胜利[终结了|打破了]{team}漫长的不胜纪录。",
            "赛前，运动员们在{city2}进行了为期[一周|十天|两周]的集训，每天训练[两|三]次。",
            "联赛将在下{weekday}继续进行，[届时|到时候]{team}将[客场挑战|远赴]{city2}[的对手|迎战强敌]。",
            "由于{n}名主力球员[受伤|伤停]，教练不得不在[季后赛|关键战]中派出一支[年轻|临时拼凑的]阵容。",
            "{Q}赛季前从{rival}转会而来，目前已在各项比赛中打进{m}球。",
            "[技术统计|赛后数据]显示，{team}本场控球率[达到|高达]{pct}，共完成{m}次射门。",
            "这座体育场于{year}年[翻修|扩建]，如今可容纳{big}名观众，还[换上了|铺设了]新的[草皮|顶棚]。",
            "[半决赛|四分之一决赛]门票不到{n}个小时就[销售一空|被抢光]，决赛票价[随之|也跟着]上涨。",
            "本次锦标赛[共有|吸引了]{m}支球队参加，冠军将[获得|拿到]全国联赛的[参赛资格|入场券]。",
            "{P}曾作为后卫效力{n}个赛季，退役后转型成为教练，崇尚[耐心控球|高位逼抢]的打法。",
            "终场前[几分钟|最后时刻]，球迷们一直在看台上[高声歌唱|齐声呐喊]，裁判补时{n}分钟。",
            "主队[率先|首先]通过一脚[低射|弧线球]打破僵局，但{rival}在半场结束前扳平了比分。",
            "{team}本赛季已经[取得|拿到]{n}场零封，是联赛中失球最少的球队。",
            "[上半场|开场阶段]双方[互有攻守|你来我往]，{rival}[的一次|一次]反击[击中|打在]了门柱上。",
            "[这位|这名][二十|二十一|二十三|二十六|二十九]岁的[边锋|中场]本赛季[已经|总共]送出{m}次助攻，[排名|位列]联赛第{pos}。",
            "{P}[赛后|在新闻发布会上]表示，球队[体能|防守]还有[提升空间|不少问题]，[下周|接下来]会[加练|调整]。",
            "[由于|因为]{city}[连日降雨|气温骤降]，体育场的草皮[状况|情况][不太理想|有些糟糕]，[双方|两队]都[踢得|打得]很[谨慎|吃力]。",
            "{rival}的[主力门将|队长]因伤缺阵，替补[门将|球员][表现|发挥][稳定|出色]，[一度|多次]化解险情。",
            "[俱乐部|球队]青训营[今年|本赛季]向一线队[输送了|推荐了]{n}名[年轻|年轻的]运动员。",
            "[赛后|比赛结束后]，{team}的球员[绕场一周|走到看台前][感谢|答谢]远道而来的{big}名[球迷|支持者]。",
            "[按照|根据]赛程，{team}在[接下来的|未来]{n2}轮中将[连续|先后]面对{n}支[积分榜前列|实力强劲]的球队。",
        ),
        quotes=(
            "“我们整整九十分钟都在[作为一个整体|齐心协力]防守，这才是赢得冠军的方式。”主教练{P}说。",
            "“最后[十|几]分钟，是球迷把我们[推向了胜利|扛过了难关]。”{Q}说。",
            "“中场休息时我告诉球员们要[相信计划|保持耐心]，他们做到了。”{L}说。",
            "“每一分都很关键，从现在开始没有退路。”主教练{P}说。",
            "“这是一个公平的结果，即使裁判漏判了一次明显的犯规。”{Q}承认。",
            "“这个赛季[没有人|很少有人]看好我们，[现在|如今]我们进入了季后赛。”队长{Q}说。",
        ),
        roles=("队长", "前门将", "体育解说员", "助理教练", "队医", "青训教练"),
        cast={
            "team": ("{city}猎鹰队", "{city}海鸥队", "{city}雄狮队", "{city}飞马队", "{city}蓝鲸队", "{city}山猫队"),
            "rival": ("{city2}猎豹队", "{city2}白鹭队", "{city2}骏马队", "{city2}火箭队", "{city2}黑熊队", "{city2}飞鱼队"),
            "sport": ("足球", "篮球", "排球", "手球", "曲棍球", "冰球", "橄榄球"),
        },
    ),
    "business": TopicSpec(
        titles=(
            "{co}季度营收增长，{thing}需求旺盛",
            "投资者看好{co}进军{city}市场",
            "{co}与{co2}达成合并协议，交易额达{money}",
            "零售商{co}下调{thing}价格以挽回消费者",
            "{city}初创企业融资{money}，在线销售{thing}",
            "业绩不佳，股东质疑{co}高管薪酬",
            "供应链延误冲击{city}的{thing}生产商",
            "{co}发布利润预警，股价下跌",
        ),
        sentences=(
            "{co}表示，本季度营收[增长|上升]{pct}，达到{money}，主要得益于{thing}的强劲销售。",
            "税前利润为{money2}，[略高于|略低于]分析师此前的预期。",
            "{weekday}早盘，该公司股价[上涨|下跌]了{pct2}。",
            "这家零售商计划在未来两年内于{city}和{city2}新开{n}家门店。",
            "首席执行官{P}对投资者表示，{year}年的供应链问题已[基本解决|大体过去]。",
            "消费者正在转向更便宜的{thing}，整个市场的利润率因此[受到挤压|明显下滑]。",
            "如果获得监管部门批准，这次合并将打造该地区[最大|第二大]的{thing}供应商。",
            "{S}{Q}认为，这份财报表现稳健，但能源和人工成本依然偏高。",
            "这家初创企业{year}年在{city}的一间[车库|出租屋]里起步，如今已有{m}名员工。",
            "股东们将在{month}月的年度大会上对这项交易进行投票。",
            "目前约{pct}的营收来自线上订单，而[三|两|四]年前这一比例只有[十分之一|五分之一]。",
            "[公司|董事会]维持股息不变，并宣布了规模为{money2}的股票回购计划。",
            "竞争对手{co2}上个季度下调了全年预期，理由是需求疲软和[运费|租金]上涨。",
            "{city2}的[供应商|农户]表示，新合同将保证未来至少{n}年的订单。",
            "据{city}一家行业协会统计，去年{thing}市场规模增长了{pct}。",
            "为了降低成本，{co}把仓库从{city2}搬到了{city}郊外一处租金更低的地方。",
            "投资者一直担心公司的债务，截至季度末负债总额为{money}。",
            "{city}的[小商店|个体店主]抱怨，连锁企业的折扣让他们很难在价格上[竞争|与之抗衡]。",
            "{bank}的分析师上调了{co}的目标价，理由是订单储备更加充足。",
            "{co}预计全年利润约为{money}，前提是{thing}的需求保持稳定。",
            "[受|由于]原材料[涨价|价格上涨]影响，{co}[把|将]部分{thing}的[售价|零售价][上调了|提高了]{pct2}。",
            "[这家|该]公司[目前|眼下]在{city}[拥有|经营着]{m}家门店，[线上|网店]订单[占|已占]营收的{pct}。",
            "[行业|业内]人士[估计|认为]，{thing}的[价格战|促销战]还会[持续|延续]到{month}月[左右|前后]。",
            "{co2}[上月|此前][宣布|表示]裁员{m}人，[并|同时]关闭了[位于|设在]{city2}的[工厂|仓库]。",
            "[不少|一些]投资者[认为|觉得]{co}的[估值|股价][偏高|过高]，[建议|主张][谨慎|理性]看待这次[增长|反弹]。",
            "[公司|管理层][计划|打算]在{year2}年前[把|将]物流成本[降低|压缩]{pct2}，[主要|重点]依靠[新仓库|自动分拣]。",
            "{city}[商会|工商联合会]的[调查|统计]显示，[当地|本地]{m}%的[小微|小型]企业[今年|上半年][实现了|保持]盈利。",
            "[分析师|券商研究员]{Q}[指出|提醒]，[汇率|运费]波动[可能|或将][吞噬|蚕食]下半年的利润。",
        ),
        quotes=(
            "“消费者告诉我们他们想要什么，我们[认真听取了|照做了]。”{co}首席执行官{P}说。",
            "“[数据|这份成绩单]不错，但市场还没有完全走出困境。”{S}{Q}说。",
            "“我们着眼的是未来十年，而不是下一个季度。”{L}对投资者说。",
            "“运费这么高，利润率只会继续[承压|偏紧]。”{S}{Q}说。",
            "“这次合并在合适的时机给了股东[规模优势|更稳健的资产负债表]。”{L}说。",
            "“一家初创企业必须一单一单地赢得[信任|客户]。”{P}[说|表示]。",
        ),
        roles=("券商分析师", "财务总监", "零售顾问", "基金经理", "行业协会负责人", "前董事会成员"),
        cast={
            "co": ("远帆食品", "青禾家居", "金穗物流", "蓝湾纺织", "松石咖啡", "白桦户外", "丰原文具"),
            "co2": ("北辰零售", "柳岸商贸", "长松供应链", "红码头贸易", "晴川百货", "橡树控股"),
            "bank": ("{city}证券", "东门资本", "河畔投资"),
            "thing": ("速冻食品", "办公家具", "自行车零件", "有机咖啡", "家庭保险", "包装材料", "童装",
                      "园艺工具", "精酿啤酒", "宠物食品"),
        },
    ),
    "technology": TopicSpec(
        titles=(
            "{tco}发布采用新算法的{thing}",
            "软件更新修复{thing}安全漏洞",
            "{city}开发者为{thing}打造开源工具",
            "芯片短缺拖慢{thing}生产",
            "{city}新建数据中心，主打绿色云计算",
            "人工智能如何改变{thing}",
            "网络安全专家就{thing}发出提醒",
            "智能手机厂商押注{thing}",
        ),
        sentences=(
            "{tco}表示，{thing}的[最新|本次]软件更新修复了外部开发者[报告|发现]的{n}个安全漏洞。",
            "该算法[完全|全部]在[设备上|本地]运行，因此[照片|语音|消息]不会离开用户的智能手机。",
            "端到端加密[默认开启|默认启用]，这是隐私保护组织[多年来|过去{n}年]一直[呼吁|争取]的改变。",
            "{tco}利用{big}条经过[匿名处理|用户授权]的样本训练了这套人工智能模型。",
            "{P}说，由于芯片[供应短缺|一度断供]，产品发布[推迟了|延后了]{n}个月。",
            "{city}附近的数据中心将利用[室外空气|运河河水]降温，[主要|大部分电力]依靠[风电|太阳能]。",
            "开发者可以[下载|查看]全部开源代码，[已有|目前已有]{m}名[志愿者|贡献者]提交了[改进|修复]。",
            "[光纤升级后|线路改造完成后]，{city}的平均宽带速度[提升到|达到]每秒{mbps}兆。",
            "网络安全[专家|顾问][建议|提醒]用户[尽快|第一时间]安装更新，并[及时|定期]修改密码。",
            "{tco}的机器人团队[花了|用了]{n}年时间，教会机械臂[抓取|分拣][易碎|形状不规则]的物品。",
            "[早期|首批]测试者[称赞|肯定了]续航表现，但表示软件[偶尔|有时]还会[卡顿|闪退]。",
            "改用新服务的[小型机构|中小学校|小商户]，云计算开支[下降|减少]了{pct}。",
            "在{S}{Q}看来，这种设计[牺牲了|放弃了]一点速度，却换来了[更好的|更可靠的]隐私保护。",
            "[独立|外部]测试人员发现，这套加密方案[能够|可以]抵御{n}种常见[攻击|攻击手段]。",
            "工程师们[用|改用]一种[更安全|内存更安全]的编程语言重写了软件的[网络|存储|同步]模块。",
            "{city2}的一个试点项目[通过|借助]新铺设的光纤，把{m}所[学校|社区中心]接入了宽带网络。",
            "[旧款|老款|早期型号的]设备将在{year2}年停止接收安全更新，这让[部分|不少]用户[感到担忧|有些不满]。",
            "智能手机版本将于{month}月[上线|推出]，[平板|电脑]版本[随后|稍后|年底]跟进。",
            "{tco}[称|宣称|表示]，[新一代|最新一代|自研的]芯片[的功耗|耗电量]比上一代[降低了|减少了]{pct}。",
            "新版{thing}改用[更小的|更轻量的]人工智能模型，每次[请求|任务]所需的电量[减少了一半|明显下降]。",
            "[这款|新版]{thing}[支持|兼容]{n}种语言，[安装包|程序][只有|仅有]{m}兆[大小|左右]。",
            "[安全|漏洞]报告[显示|指出]，[攻击者|黑客]可能[利用|借助]这个漏洞[读取|窃取][用户|设备上]的[通讯录|位置信息]。",
            "{tco}[在|于]{city}[新设|设立]了[研发中心|测试基地]，[计划|准备]招聘{m}名[工程师|开发者]。",
            "[代码审查|安全审计][发现|表明]，旧版软件[中|里]有{n}处[隐患|缺陷]已经存在了[好几年|{n2}年]。",
            "[为了|为]省电，{thing}[会在|可以在][夜间|闲置时][自动|主动][降低|调低][刷新率|运行频率]。",
            "[部分|一些]用户[反映|抱怨]，升级后[蓝牙|无线网络]连接[偶尔|时常]中断，{tco}[表示|称]正在[排查|修复]。",
            "{city2}的[高校|大学]与{tco}[合作|联合][开设了|开办了]机器人[课程|训练营]，[首期|第一期]招收{m}名学生。",
            "[按照|根据]新的隐私条款，[用户|使用者]可以[随时|一键][导出|删除]自己的[全部|所有]数据。",
        ),
        quotes=(
            "“隐私不应该是一项高级功能。”{tco}的{R}{P}说。",
            "“谁都不应该需要一本说明书才能打开加密功能。”{P}说。",
            "“好的软件应该平淡无奇，它只是一直正常工作。”{Q}说。",
            "“我们赶在攻击者之前发现了这个漏洞，这是[最好的结果|最理想的情况]。”{L}说。",
            "“难的不是算法，而是数据。”{S}{Q}说。",
            "“开发者需要能够自己[检查和修复|审查和改进]的工具。”{L}[补充道|表示]。",
        ),
        roles=("软件工程师", "安全主管", "网络安全顾问", "产品经理", "开源项目维护者", "网络工程师"),
        cast={
            "tco": ("灵犀科技", "极光科技", "青云科技", "星河科技", "蓝桥科技", "墨石科技"),
            "thing": ("智能恒温器", "语音助手", "密码管理器", "家用路由器", "智能手表", "电子阅读器",
                      "送货无人机", "视频通话工具", "导航应用", "翻译耳机"),
        },
    ),
    "culture": TopicSpec(
        titles=(
            "{venue}推出{thing}展览",
            "一部关于{city}的处女作小说找到了读者",
            "{city}艺术节以{n}场免费活动致敬{thing}",
            "画家{P}携新作回到{city}",
            "{city}乐团为何在停车场演出",
            "{city}诗歌之夜吸引了意想不到的人群",
            "雕塑步道把{thing}带上{city}街头",
            "剧院在{city}重新上演一部被遗忘的喜剧",
        ),
        sentences=(
            "本次展览汇集了{m}件作品，其中[大部分|多数]借自{city2}的私人收藏。",
            "这位画家花了{n}年时间完成这组作品，大多是在[租来的|借来的]画室里连夜创作。",
            "观众穿过一条挂满{thing}的[狭长|昏暗]走廊，才能进入主展厅。",
            "小说讲述了{year}年冬天，{city}一位[夜班面包师|退休教师|渡轮驾驶员]的故事。",
            "艺术节将持续到{weekday}，期间共有{m}场音乐会、朗读会和放映活动，大部分免费。",
            "市乐团将[演奏|首演]{Q}专门创作的新曲目，同时上演[两|三]部[经典|耳熟能详的]交响曲。",
            "在[老消防站|图书馆]举办的诗歌朗读会，如今每次能吸引{m}人参加。",
            "这座雕塑由回收的[青铜|钢材|铜料]铸成，[矗立|安放]在博物馆[入口旁|门前的广场上]。",
            "[评论家|剧评人]称赞了[舞台设计|服装|灯光]，但认为[第二幕|结尾][略显冗长|有些仓促]。",
            "剧院获得了{money}的捐款，用于在新演出季开始前修缮[屋顶|座椅]。",
            "策展人{P}说，博物馆希望以普通人的视角来展示{thing}。",
            "开幕周末的门票在{n}个小时内售罄，画廊只好增加晚间场次。",
            "编舞家与{m}名舞者一起排练，其中一半是来自{city}的学生。",
            "{city}的年轻艺术家为这次活动彩绘了沿港口的{m}扇卷帘门。",
            "这部剧写于{year}年，此后被遗忘了几十年，直到{Q}在{city2}的档案馆里发现了它。",
            "这部小说已售出{big}册，并被翻译成{n}种语言。",
            "[首演|开幕]当晚，剧院里的[观众|{m}多名观众]起立鼓掌，[久久不愿离去|掌声持续了好几分钟]。",
            "画廊计划明年把展览带到{city2}和其他{n}座城市巡回展出。",
            "{venue}新开了一间[阅览室|版画工作室]，观众可以在工作人员指导下亲手临摹{thing}。",
            "这位画家坚持用[河泥|贝壳粉|本地石料]自制颜料，这个习惯是在{city2}养成的。",
            "[这次|本次]展览[按照|依照][年代|主题]分为{n}个[单元|部分]，[每个|各个]单元都[配有|附有][语音导览|说明卡片]。",
            "[这位|该]小说家[曾在|早年在]{city2}[做过|当过][记者|教师]，[第一部|首部]小说[写了|花了]{n}年。",
            "[剧院|剧团][今年|本季]的演出[门票|座位][平均|大多]在{m}元[左右|上下]，学生[可以|能]享受[半价|优惠]。",
            "{city}的[街头艺人|民间乐手][也|同样]被[邀请|请]来[参加|加入][闭幕|开幕]演出。",
            "[展厅|展馆]里[最受欢迎|人气最高]的作品，是[一组|一件][描绘|表现]{city}[旧码头|老街巷]的{thing}。",
            "[这部|该]电影[改编自|取材于]一部[同名|鲜为人知的]小说，[在|于]{city2}[取景|拍摄]了{n}个月。",
            "{Q}[花了|用了][{n}年|大半年][整理|收集]当地民歌，[最终|最后][录制成|出版了]一张唱片。",
            "[博物馆|美术馆][每周|每个]{weekday}[晚上|下午][延长|推迟]闭馆时间，[方便|照顾][上班族|年轻人][参观|观展]。",
        ),
        quotes=(
            "“我希望人们[放慢脚步|多停留一会儿]，认真去看。”画家{P}说。",
            "“博物馆应该像一[间客厅|个公共广场]，而不是银行金库。”{L}说。",
            "“诗歌就是大声说出来的专注。”朗读会组织者{Q}说。",
            "“这个艺术节属于这座城市，而不属于我们。”{S}{Q}说。",
            "“每天晚上，乐团都能在[乐谱|音乐]里发现新的东西。”{L}说。",
            "“最好的展览，是让人想再来一次的展览。”{R}{P}说。",
        ),
        roles=("策展人", "剧院导演", "诗人", "艺术节总监", "音乐评论家", "小说家", "雕塑家"),
        cast={
            "venue": ("{city}美术馆", "{city}博物馆", "{city}大剧院", "{city}音乐厅", "{city}老粮仓画廊"),
            "thing": ("山水版画", "木刻版画", "手工木偶", "民歌", "无声电影", "陶瓷碗", "街头摄影",
                      "刺绣肖像", "港口油画", "老店招牌", "纸灯笼", "玻璃马赛克"),
        },
    ),
}

ZH_GENERIC: tuple[str, ...] = (
    "{city}[当地官员|有关部门]表示，将在{month}月前公布一份更[完整|详细]的报告。",
    "{city}居民对此反应不一，有人表示[欢迎|赞同]，也有人希望了解更多[细节|情况]。",
    "这些数字[涵盖了|反映的是]{year}年[上半年|下半年|全年]的情况。",
    "被问及时间安排时，一位发言人说，更多细节将在[未来几周内|{month}月底前]公布。",
    "在{city}生活了{m}年的{Q}说，这个消息并不[让人意外|出乎意料]。",
    "这一切并非一夜之间发生，[多位|{n}位]参与者强调，进展一直[比较缓慢|不算顺利]。",
    "{weekday}晚上，{city}将举行一场公开说明会，市民可以当面提出问题。",
    "天气也[没有帮忙|添了乱]：第[一|二]周的[大雨|暴雨]让{city}附近的[几条|{n}条]道路被迫封闭。",
    "仍有一些细节尚未确定，包括下一阶段的[费用由谁承担|具体时间表]。",
    "此前，{city2}的一项类似计划不到[一年|{n}个月]就因[资金不足|人手不够]而搁浅。",
    "[目前|眼下]的重点是让一切保持[简单、实用、负担得起|简单实用]。",
    "参与其中的[许多人|大多数人]都是志愿者，他们利用[晚上和周末|业余时间]前来帮忙。",
    "[当地|区]政府承诺将在[夏天|年底]之后重新审视相关安排。",
    "这已经不是{city}第一次因为这类事情[引起关注|登上新闻]。",
    "通往{city}的公交线路明年将进一步[完善|优化]，组织者希望这会有所帮助。",
    "这一决定是在经过{n}个月的[讨论|协商]和[几次|{n2}次]推迟之后作出的。",
    "[批评者|反对者]认为这笔钱本可以用在别处，但{L}并不认同这种[看法|说法]。",
    "邻近的{city2}正在密切关注，并可能[尝试|借鉴]类似的做法。",
    "接受采访的每个人都认同一点：接下来的[几个月|一年][至关重要|将是关键]。",
    "{city}图书馆保存的[档案|旧报纸]显示，早在{year}年就有人[讨论过|提出过]这个问题。",
    "现场附近停车位有限，[主办方|组织者]建议大家[步行、骑车或乘坐公交|乘坐公交或地铁]前往。",
    "在一次简短的交谈中，{Q}形容过去几个月[紧张|辛苦]却值得。",
    "一位[地方政府|市政府]发言人[拒绝|没有]透露具体费用。",
    "{city}的年轻人似乎[格外|特别]感兴趣，一项非正式调查询问了{big}户家庭。",
    "{weekday}上午{n2}点刚过，[入口处|门外]就已经排起了长队。",
    "有人担心后续资金难以为继，{L}则表示[预算|账目]已经[核算清楚|安排妥当]。",
    "[据|按照]{city}方面的说法，相关[方案|安排]还需要经过{n}轮[征求意见|公开讨论]。",
    "[一位|另一位]居民{Q}回忆说，[十多年前|{year}年前后]这条街完全是另一番模样。",
    "下一次进展通报[预计|计划]在{month}月发布，届时将公布最新数字。",
    "[离开前|采访结束时]，{Q}笑着说，最难的部分其实[才刚刚开始|还在后面]。",
)

# Connectives put in front of some sentences.
EN_LINKS: tuple[str, ...] = (
    "Meanwhile, ", "In the meantime, ", "As it turns out, ", "By most accounts, ", "Separately, ",
    "At the same time, ", "For what it is worth, ", "[Notably|Tellingly], ", "In practice, ", "Even so, ",
    "According to people familiar with the plans, ", "As things stand, ",
)
ZH_LINKS: tuple[str, ...] = (
    "此外，", "与此同时，", "据悉，", "另据了解，", "值得一提的是，", "另外，", "据介绍，", "事实上，",
    "据{city}当地媒体报道，", "记者了解到，", "[截至|到]发稿时，", "从目前情况看，",
    "{L}[介绍说|告诉记者]，", "记者从{city}方面获悉，", "[一位|多位]知情人士透露，", "[据|根据]{city2}的同行介绍，",
    "[回头看|回顾过去]，", "[在{city}|在当地]，",
)

# --------------------------------------------------------------------------- fixed page texts

SHORT_PAGES: tuple[tuple[str, str, str, str], ...] = (  # (lang, slug, title, body)
    ("en", "harbour-photo-gallery", "Harbour photo gallery", "Page coming soon."),
    ("en", "election-night-live", "Election night live", "Live coverage will begin shortly. Please check back later."),
    ("en", "reader-letters", "Reader letters", "No letters have been published yet."),
    ("en", "weekend-weather", "Weekend weather", "This forecast is being updated."),
    ("en", "podcast-episode-12", "Podcast episode 12", "Audio coming soon. Transcript to follow."),
    ("zh", "photo-gallery", "港口图集", "页面即将上线。"),
    ("zh", "live-coverage", "晚间直播", "本文正在编辑中，请稍后再来。"),
    ("zh", "reader-letters", "读者来信", "敬请期待。"),
)
SPAM_EN = ("watches", "sneakers", "sunglasses", "handbags", "perfume", "phone cases")
SPAM_ZH = ("手表", "球鞋")
PRIVATE_PAGES: tuple[tuple[str, str], ...] = (  # (slug, title)
    ("editorial-calendar", "Editorial calendar (internal)"),
    ("staff-directory", "Staff directory (internal)"),
    ("budget-2025", "Newsroom budget 2025 (internal)"),
    ("embargoed-story", "Embargoed story draft (internal)"),
    ("source-list", "Confidential source list (internal)"),
)

# --------------------------------------------------------------------------- text generation

_ALT = re.compile(r"\[([^\[\]]+)\]")
_SLOT = re.compile(r"\{(\w+)\}")
_EN_WORD = re.compile(r"[A-Za-z0-9]+(?:['’-][A-Za-z0-9]+)*")
_HAN = re.compile(r"[\u4e00-\u9fff]")


def _en_numbers(rng: random.Random) -> dict[str, Callable[[], str]]:
    def money() -> str:
        return f"{rng.randint(2, 48)}.{rng.randint(1, 9)} million euros"

    def score() -> str:
        a = rng.randint(1, 4)
        return f"{a}-{rng.randint(0, a - 1)}"

    def ordinal(k: int) -> str:
        suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
        return f"{k}{suffix}"

    return {
        "n": lambda: rng.choice(NUM_WORDS),
        "n2": lambda: rng.choice(NUM_WORDS[1:]),
        "deg": lambda: rng.choice(NUM_WORDS[:3]),
        "m": lambda: str(rng.randint(12, 48)),
        "big": lambda: f"{rng.randint(12, 98)},{rng.randint(1, 9)}00",
        "pct": lambda: f"{rng.randint(11, 78)} percent",
        "pct2": lambda: f"{rng.randint(2, 9)} percent",
        "money": money,
        "money2": lambda: f"{rng.randint(120, 960)} thousand euros",
        "year": lambda: str(rng.randint(2009, 2021)),
        "year2": lambda: str(rng.randint(2027, 2029)),
        "month": lambda: rng.choice(MONTHS),
        "month2": lambda: rng.choice(MONTHS),
        "weekday": lambda: rng.choice(WEEKDAYS),
        "score": score,
        "minute": lambda: ordinal(rng.randint(55, 89)),
        "pos": lambda: rng.choice(ORDINALS),
        "cents": lambda: str(rng.randint(12, 90)),
        "cents2": lambda: str(rng.randint(12, 90)),
        "mbps": lambda: str(rng.randint(30, 90) * 10),
        "hour": lambda: rng.choice(NUM_WORDS[3:]),
    }


def _zh_numbers(rng: random.Random) -> dict[str, Callable[[], str]]:
    def score() -> str:
        a = rng.randint(1, 4)
        return f"{a}比{rng.randint(0, a - 1)}"

    return {
        "n": lambda: rng.choice(ZH_NUMS),
        "n2": lambda: rng.choice(ZH_NUMS[1:]),
        "deg": lambda: rng.choice(ZH_NUMS[:3]),
        "m": lambda: str(rng.randint(12, 48)),
        "big": lambda: str(rng.randint(12, 98) * 100),
        "pct": lambda: f"{rng.randint(11, 78)}%",
        "pct2": lambda: f"{rng.randint(2, 9)}%",
        "money": lambda: f"{rng.randint(2, 48)}.{rng.randint(1, 9)}亿元",
        "money2": lambda: f"{rng.randint(300, 9800)}万元",
        "year": lambda: str(rng.randint(2009, 2021)),
        "year2": lambda: str(rng.randint(2027, 2029)),
        "month": lambda: str(rng.randint(1, 12)),
        "month2": lambda: str(rng.randint(1, 12)),
        "weekday": lambda: rng.choice(ZH_WEEKDAYS),
        "score": score,
        "minute": lambda: str(rng.randint(55, 89)),
        "pos": lambda: rng.choice(ZH_ORDS),
        "mbps": lambda: str(rng.randint(30, 90) * 10),
    }


class _Filler:
    """Fills templates from an article's cast and fresh random numbers."""

    def __init__(self, rng: random.Random, lang: str, cast: dict[str, str]) -> None:
        self.rng = rng
        self.cast = cast
        self.numbers = _en_numbers(rng) if lang == "en" else _zh_numbers(rng)
        self.lang = lang

    def __call__(self, template: str) -> str:
        s = _ALT.sub(lambda m: self.rng.choice(m.group(1).split("|")), template)
        s = _SLOT.sub(self._slot, s)
        if self.lang == "en" and s[:1].islower():
            s = s[0].upper() + s[1:]
        return s

    def _slot(self, m: re.Match[str]) -> str:
        name = m.group(1)
        if name in self.cast:
            return self.cast[name]
        return self.numbers[name]()


def _cast(rng: random.Random, lang: str, spec: TopicSpec) -> dict[str, str]:
    """The people, places and organisations of one article."""
    if lang == "en":
        city, city2 = rng.sample(CITIES, 2)
        (f1, f2), (l1, l2) = rng.sample(FIRST_NAMES, 2), rng.sample(LAST_NAMES, 2)
        people = {"P": f"{f1} {l1}", "L": l1, "Q": f"{f2} {l2}"}
    else:
        city, city2 = rng.sample(ZH_CITIES, 2)
        s1, s2 = rng.sample(ZH_SURNAMES, 2)
        g1, g2 = rng.sample(ZH_GIVEN, 2)
        people = {"P": s1 + g1, "L": s1 + g1, "Q": s2 + g2}
    cast = {"city": city, "city2": city2, **people}
    for slot in sorted(spec.cast):
        base = slot.rstrip("2")
        choices = [c for c in spec.cast[slot] if slot == base or c != cast.get(base)]
        cast[slot] = rng.choice(choices).format(city=city, city2=city2)
    if "thing" in spec.cast:
        cast["thing2"] = rng.choice([t for t in spec.cast["thing"] if t != cast["thing"]])
    r1, r2 = rng.sample(spec.roles, 2)
    cast["R"], cast["S"] = r1.format(**cast), r2.format(**cast)
    return cast


@dataclass
class Article:
    lang: str
    topic: str
    title: str
    paragraphs: list[list[str]]  # sentences per paragraph
    day: date
    author: str

    def text(self) -> str:
        sep = " " if self.lang == "en" else ""
        return "\n".join(sep.join(p) for p in self.paragraphs)


def keyword_hits(text: str, lang: str) -> dict[str, int]:
    """Occurrences of each topic's keywords in ``text`` (lower-cased substring counts)."""
    t = text.lower()
    return {topic: sum(t.count(k.lower()) for k in kws[lang]) for topic, kws in TOPIC_KEYWORDS.items()}


def _size(text: str, lang: str) -> int:
    return len(_EN_WORD.findall(text)) if lang == "en" else len(_HAN.findall(text))


class _Deck:
    """Deals templates like cards, reshuffling when empty, so that articles of one topic spread
    over the whole pool instead of drawing the same templates again and again."""

    def __init__(self, rng: random.Random, items: Sequence[str]) -> None:
        self.rng, self.items = rng, tuple(items)
        self.queue: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def draw(self, used: set[str]) -> str:
        for _ in range(2):
            for i, t in enumerate(self.queue):
                if t not in used:
                    used.add(t)
                    return self.queue.pop(i)
            self.queue += self.rng.sample(self.items, len(self.items))
        raise LookupError("every template of this deck is used")


def _draft(rng: random.Random, lang: str, topic: str, decks: dict[tuple[str, str], _Deck]) -> Article:
    spec = (EN if lang == "en" else ZH)[topic]
    fill = _Filler(rng, lang, _cast(rng, lang, spec))
    title = fill(rng.choice(spec.titles))
    n_par = rng.randint(3, 7) if lang == "en" else rng.randint(3, 5)
    target = rng.randint(190, 360) if lang == "en" else rng.randint(305, 430)
    pools = {"topic": decks[(lang, topic)], "generic": decks[(lang, "generic")],
             "quote": decks[(lang, topic + ":quote")]}
    used: dict[str, set[str]] = {k: set() for k in pools}
    sentences: list[str] = [fill(pools["topic"].draw(used["topic"]))]
    size = _size(sentences[0], lang)
    weights = (52, 33, 15) if lang == "en" else (50, 42, 8)
    while size < target or len(sentences) < 2 * n_par:
        kind = rng.choices(("topic", "generic", "quote"), weights=weights)[0]
        if kind == "quote" and len(used["quote"]) >= 2:
            kind = "topic"
        if len(used[kind]) == len(pools[kind]):
            kind = "topic" if len(used["topic"]) < len(pools["topic"]) else "generic"
        s = fill(pools[kind].draw(used[kind]))
        if kind != "quote" and rng.random() < (0.3 if lang == "en" else 0.45):
            if lang == "zh":
                s = fill(rng.choice(ZH_LINKS)) + s
            elif s.startswith(("The ", "A ")):
                s = fill(rng.choice(EN_LINKS)) + s[0].lower() + s[1:]
        sentences.append(s)
        size += _size(s, lang)
    # contiguous chunks, sizes as even as possible
    bounds = [round(i * len(sentences) / n_par) for i in range(n_par + 1)]
    paragraphs = [sentences[bounds[i]:bounds[i + 1]] for i in range(n_par)]
    day = date(2024, 1, 1) + timedelta(days=rng.randrange(640))
    if lang == "en":
        author = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
    else:
        author = rng.choice(ZH_SURNAMES) + rng.choice(ZH_GIVEN)
    return Article(lang, topic, title, paragraphs, day, author)


def _decks(rng: random.Random) -> dict[tuple[str, str], _Deck]:
    decks = {("en", "generic"): _Deck(rng, EN_GENERIC), ("zh", "generic"): _Deck(rng, ZH_GENERIC)}
    for lang, specs in (("en", EN), ("zh", ZH)):
        for topic in TOPICS:
            decks[(lang, topic)] = _Deck(rng, specs[topic].sentences)
            decks[(lang, topic + ":quote")] = _Deck(rng, specs[topic].quotes)
    return decks


def _acceptable(a: Article) -> bool:
    size = _size(a.text(), a.lang)
    if not (180 <= size <= 500 if a.lang == "en" else 300 <= size <= 900):
        return False
    if not 3 <= len(a.paragraphs) <= 7:
        return False
    hits = keyword_hits(a.title + "\n" + a.text(), a.lang)
    own = hits.pop(a.topic)
    return own >= 4 and own >= 3 * max(hits.values()) and sum(hits.values()) <= 2


def _article(rng: random.Random, lang: str, topic: str, titles: set[str],
             decks: dict[tuple[str, str], _Deck]) -> Article:
    while True:
        a = _draft(rng, lang, topic, decks)
        if a.title not in titles and _acceptable(a):
            titles.add(a.title)
            return a


# --------------------------------------------------------------------------- PII

def _pii_sentences(rng: random.Random, lang: str, k: int) -> list[str]:
    """Contact sentences with fictional e-mail addresses and phone numbers (k selects the formats)."""
    if lang == "en":
        first, last = rng.choice(FIRST_NAMES).lower(), rng.choice(LAST_NAMES).lower()
        emails = (f"{first}.{last}@example.com", "newsdesk@example.org", f"{first[0]}{last}@example.net")
        phones = (f"+44 20 7946 0{rng.randint(100, 999)}", f"(555) 010-{rng.randint(1000, 9999)}",
                  f"555-010-{rng.randint(1000, 9999)}")
        email, email2 = emails[k % 3], emails[(k + 1) % 3]
        phone, phone2 = phones[k % 3], phones[(k + 2) % 3]
        return [
            f"Readers who spotted an error can write to {email} or call the desk on {phone}.",
            f"The organisers can be reached at {email2}, and bookings are taken on {phone2} during working hours.",
        ]
    emails = ("wang.siyuan@example.com", "editor@example.org", "tips@example.net", "li.jiayi@example.com")
    phones = ("13800138000", "138 0013 8000", "+86 138 0013 8000", "138-0013-8000")
    return [
        f"如发现报道有误，请发送邮件至{emails[k % 4]}，或致电{phones[k % 4]}。",
        f"报名和咨询可联系{emails[(k + 1) % 4]}，工作日也可拨打{phones[(k + 1) % 4]}。",
    ]


# --------------------------------------------------------------------------- HTML

def _e(s: str) -> str:
    return html.escape(s, quote=False)


def _slug_en(title: str) -> str:
    words = re.findall(r"[a-z0-9]+", title.lower())
    return "-".join(words[:8])


def _date_label(d: date, lang: str) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}" if lang == "en" else f"{d.year}年{d.month}月{d.day}日"


def _nav(lang: str) -> str:
    labels = TOPIC_LABELS[lang]
    if lang == "en":
        items = [("/", "Home")] + [(f"/topics/{t}.html", labels[t]) for t in TOPICS]
        items += [("/archive.html", "Archive"), ("/zh/index.html", "中文")]
    else:
        items = [("/zh/index.html", "首页")] + [(f"/topics/zh/{t}.html", labels[t]) for t in TOPICS]
        items += [("/archive.html", "归档"), ("/", "English")]
    lis = "".join(f'<li><a href="{h}">{_e(t)}</a></li>' for h, t in items)
    brand = SITE_NAME if lang == "en" else SITE_NAME_ZH
    home = "/" if lang == "en" else "/zh/index.html"
    return (
        f'<header class="site-header">\n<a class="brand" href="{home}"><img src="{PNG_PATH}" alt="" width="32" '
        f'height="32"> {_e(brand)}</a>\n<nav aria-label="Sections"><ul>{lis}</ul></nav>\n</header>'
    )


def _footer(lang: str) -> str:
    if lang == "en":
        return (
            '<footer class="site-footer">\n'
            f"<p>© 2025 {SITE_NAME}. A fictional news site generated for testing dataset_platform; "
            "all names, places and stories are invented.</p>\n"
            '<p><a href="/#about">About us</a> · <a href="/#contact">Contact</a> · '
            f'<a href="{PDF_PATH}">Annual report (PDF)</a> · <a href="{PNG_PATH}">Logo</a> · '
            '<a href="/archive.html">Archive</a></p>\n</footer>'
        )
    return (
        '<footer class="site-footer">\n'
        f"<p>© 2025 {SITE_NAME_ZH}。本站为测试数据平台而生成的虚构新闻网站，所有人名、地名和报道均为虚构。</p>\n"
        '<p><a href="/#about">关于我们</a> · <a href="/#contact">联系我们</a> · '
        f'<a href="{PDF_PATH}">年度报告（PDF）</a> · <a href="{PNG_PATH}">标志</a></p>\n</footer>'
    )


def _sidebar(links: Sequence[tuple[str, str]], lang: str) -> str:
    head = "Related stories" if lang == "en" else "相关报道"
    lis = "\n".join(f'<li><a href="{h}">{_e(t)}</a></li>' for h, t in links)
    return f'<aside class="related">\n<h2>{head}</h2>\n<ul>\n{lis}\n</ul>\n</aside>'


def _page(lang: str, title: str, main: str, sidebar: str = "") -> bytes:
    html_lang = "en" if lang == "en" else "zh-CN"
    brand = SITE_NAME if lang == "en" else SITE_NAME_ZH
    doc = (
        "<!DOCTYPE html>\n"
        f'<html lang="{html_lang}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} | {_e(brand)}</title>\n"
        f'<link rel="icon" href="{PNG_PATH}">\n</head>\n<body>\n'
        f"{_nav(lang)}\n<main>\n{main}\n{sidebar}\n</main>\n{_footer(lang)}\n</body>\n</html>\n"
    )
    return doc.encode("utf-8")


def _article_html(a: Article, related: Sequence[tuple[str, str]]) -> bytes:
    sep = " " if a.lang == "en" else ""
    by = "By" if a.lang == "en" else "记者"
    paras = "\n".join(f"<p>{_e(sep.join(p))}</p>" for p in a.paragraphs)
    main = (
        f'<article>\n<h1>{_e(a.title)}</h1>\n<div class="byline">{by} {_e(a.author)} · '
        f'<time datetime="{a.day.isoformat()}">{_date_label(a.day, a.lang)}</time></div>\n{paras}\n</article>'
    )
    return _page(a.lang, a.title, main, _sidebar(related, a.lang))


def _list_html(lang: str, title: str, sections: Sequence[tuple[str, Sequence[tuple[str, str]]]],
               intro: str = "", extra: str = "") -> bytes:
    parts = [f"<h1>{_e(title)}</h1>"]
    if intro:
        parts.append(f"<p>{_e(intro)}</p>")
    for head, links in sections:
        lis = "\n".join(f'<li><a href="{h}">{_e(t)}</a></li>' for h, t in links)
        parts.append(f'<nav class="listing" aria-label="{html.escape(head)}">\n<h2>{_e(head)}</h2>\n<ul>\n{lis}\n</ul>\n</nav>')
    if extra:
        parts.append(extra)
    return _page(lang, title, '<div class="listing">\n' + "\n".join(parts) + "\n</div>")


def _spam_html(rng: random.Random, lang: str, product: str) -> tuple[str, bytes]:
    if lang == "en":
        title = f"CHEAP {product.upper()} BEST PRICE BUY NOW"
        line = f"BUY NOW cheap {product} cheap {product} best price BUY NOW free shipping"
        stuffing = " ".join([f"cheap {product}"] * rng.randint(150, 220))
    else:
        title = f"特价{product} 便宜 马上购买"
        line = f"特价{product}便宜{product}马上购买限时优惠包邮"
        stuffing = "".join([f"便宜{product}"] * rng.randint(150, 220))
    lines = "\n".join(f"<p>{_e(line)}</p>" for _ in range(rng.randint(40, 70)))
    main = f"<article>\n<h1>{_e(title)}</h1>\n{lines}\n<p>{_e(stuffing)}</p>\n</article>"
    return title, _page(lang, title, main)


def _short_html(lang: str, title: str, body: str) -> bytes:
    return _page(lang, title, f"<article>\n<h1>{_e(title)}</h1>\n<p>{_e(body)}</p>\n</article>")


def _private_html(slug: str, title: str) -> bytes:
    body = (
        f"This internal page ({slug.replace('-', ' ')}) is for newsroom staff only. It is listed in robots.txt "
        "so that polite crawlers never fetch it, although the home page links to it. Nothing here is meant "
        "for publication, and a well-behaved crawl of this site should not contain a single line of it."
    )
    return _page("en", title, f"<article>\n<h1>{_e(title)}</h1>\n<p>{_e(body)}</p>\n</article>")


# --------------------------------------------------------------------------- binary files

def _pdf() -> bytes:
    """A small, valid one-page PDF 1.4 with a correct cross-reference table."""
    text = f"{SITE_NAME} - Annual report 2025 (fictional demo document)"
    stream = f"BT /F1 16 Tf 72 720 Td ({text}) Tj ET\n".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
         b"/Resources << /Font << /F1 5 0 R >> >> >>"),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _png(size: int = 32) -> bytes:
    """A small, valid RGB PNG (a two-colour badge)."""
    rows = bytearray()
    for y in range(size):
        rows.append(0)  # filter: none
        for x in range(size):
            inside = (x - size / 2 + 0.5) ** 2 + (y - size / 2 + 0.5) ** 2 < (size / 2 - 2) ** 2
            rows += bytes((24, 82, 160)) if inside else bytes((250, 247, 240))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(rows), 9)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- the site

def _build() -> tuple[dict[str, bytes], list[dict]]:
    """(path -> file bytes, manifest entries) of the whole site."""
    rng = random.Random(SEED)
    files: dict[str, bytes] = {}
    entries: list[dict] = []

    def add(path: str, kind: str, lang: str | None, topic: str | None = None, dup: str | None = None,
            data: bytes | None = None) -> None:
        if data is not None:
            assert path not in files, path
            files[path] = data
        entries.append({"path": path, "kind": kind, "lang": lang, "topic": topic, "duplicate_of": dup})

    # ---- articles (and the PII ones, which are articles with contact details)
    titles: set[str] = set()
    decks = _decks(rng)
    arts: dict[str, list[tuple[str, Article, str]]] = {"en": [], "zh": []}  # (path, article, kind)
    for lang in ("en", "zh"):
        slugs: set[str] = set()
        plan = [(TOPICS[i % len(TOPICS)], "article") for i in range(N_ARTICLES[lang])]
        plan += [(TOPICS[i % len(TOPICS)], "pii") for i in range(N_PII[lang])]
        for i, (topic, kind) in enumerate(plan):
            a = _article(rng, lang, topic, titles, decks)
            if kind == "pii":
                k = len([x for x in arts[lang] if x[2] == "pii"])
                contact = _pii_sentences(rng, lang, k)
                a.paragraphs[-1].append(contact[0])
                a.paragraphs[len(a.paragraphs) // 2].append(contact[1])
            if lang == "en":
                base = slug = _slug_en(a.title)
                k = 1
                while slug in slugs:
                    k += 1
                    slug = f"{base}-{k}"
            else:
                slug = f"{topic}-{i + 1:03d}"
            slugs.add(slug)
            arts[lang].append((f"/articles/{lang}/{slug}.html", a, kind))

    def related(lang: str, path: str, topic: str) -> list[tuple[str, str]]:
        same = [(p, a.title) for p, a, _ in arts[lang] if a.topic == topic]
        i = [p for p, _ in same].index(path)
        return [same[(i + j) % len(same)] for j in (1, 2, 3, 4)]

    html_of: dict[str, bytes] = {}
    for lang in ("en", "zh"):
        for path, a, kind in arts[lang]:
            html_of[path] = _article_html(a, related(lang, path, a.topic))
            add(path, kind, lang, a.topic, data=html_of[path])

    # ---- exact duplicates (byte-identical mirrors) and near duplicates
    mirrors: list[tuple[str, str]] = []
    reprints: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for lang in ("en", "zh"):
        plain = [(p, a) for p, a, k in arts[lang] if k == "article"]
        picks: list[int] = []  # spread over the topics, in turn
        for j in range(N_MIRROR[lang] + N_NEAR[lang]):
            topic = TOPICS[j % len(TOPICS)]
            picks.append(rng.choice([i for i, (_, a) in enumerate(plain) if a.topic == topic and i not in picks]))
        for idx in picks[: N_MIRROR[lang]]:
            src, a = plain[idx]
            path = f"/mirror/{lang}/{src.rsplit('/', 1)[1]}"
            add(path, "exact_duplicate", lang, a.topic, src, data=html_of[src])
            mirrors.append((path, a.title))
        for j, idx in enumerate(picks[N_MIRROR[lang]:]):
            src, a = plain[idx]
            spec = (EN if lang == "en" else ZH)[a.topic]
            fill = _Filler(rng, lang, _cast(rng, lang, spec))
            paragraphs = [list(p) for p in a.paragraphs]
            if j % 2 == 0:  # one sentence replaced
                text = a.text()
                new = next(s for s in (fill(t) for t in rng.sample(spec.sentences, len(spec.sentences)))
                           if s not in text)
                p = paragraphs[len(paragraphs) // 2]
                p[len(p) // 2] = new
            else:  # one sentence appended
                note = ("This article was updated on {d} to add a response from the organisers."
                        if lang == "en" else "本文已于{d}更新，补充了主办方的回应。")
                paragraphs[-1].append(note.format(d=_date_label(a.day + timedelta(days=2), lang)))
            near = Article(a.lang, a.topic, a.title, paragraphs, a.day, a.author)
            path = f"/reprints/{lang}/{src.rsplit('/', 1)[1]}"
            add(path, "near_duplicate", lang, a.topic, src, data=_article_html(near, related(lang, src, a.topic)))
            reprints.setdefault((lang, a.topic), []).append((path, a.title))

    # ---- spam, short, private pages
    spam_links: list[tuple[str, str]] = []
    for lang, products in (("en", SPAM_EN), ("zh", SPAM_ZH)):
        for product in products:
            path = f"/promo/{lang}/cheap-{re.sub(r'[^a-z]+', '-', product) if lang == 'en' else len(spam_links)}.html"
            title, data = _spam_html(rng, lang, product)
            add(path, "spam", lang, data=data)
            spam_links.append((path, title))
    short_links: list[tuple[str, str]] = []
    for lang, slug, title, body in SHORT_PAGES:
        path = f"/drafts/{lang}/{slug}.html"
        add(path, "short", lang, data=_short_html(lang, title, body))
        short_links.append((path, title))
    private_links: list[tuple[str, str]] = []
    for slug, title in PRIVATE_PAGES:
        path = f"/private/{slug}.html"
        add(path, "private", "en", data=_private_html(slug, title))
        private_links.append((path, title))

    # ---- category, index and archive pages
    by_date = {lang: sorted(arts[lang], key=lambda x: (x[1].day, x[0]), reverse=True) for lang in arts}
    for lang in ("en", "zh"):
        labels = TOPIC_LABELS[lang]
        for topic in TOPICS:
            links = [(p, a.title) for p, a, _ in by_date[lang] if a.topic == topic]
            sections = [("Latest stories" if lang == "en" else "最新报道", links)]
            if reprints.get((lang, topic)):
                sections.append(("Reprints" if lang == "en" else "转载", reprints[(lang, topic)]))
            path = f"/topics/{topic}.html" if lang == "en" else f"/topics/zh/{topic}.html"
            title = f"{labels[topic]} news" if lang == "en" else f"{labels[topic]}新闻"
            add(path, "category", lang, topic, data=_list_html(lang, title, sections))

    en_topics = [(f"/topics/{t}.html", TOPIC_LABELS["en"][t]) for t in TOPICS]
    zh_topics = [(f"/topics/zh/{t}.html", TOPIC_LABELS["zh"][t]) for t in TOPICS]
    about = (
        '<section id="about">\n<h2>About us</h2>\n<p>' + _e(
            f"{SITE_NAME} is a small fictional newspaper. Its pages are generated by a program for the "
            "dataset_platform demo, so every story, person and town here is made up.") + "</p>\n</section>\n"
        '<section id="contact">\n<h2>Contact</h2>\n<p>' + _e(
            "This newsroom does not exist, so there is nobody to contact; the annual report is a one-page "
            "placeholder.") + "</p>\n</section>"
    )
    index_sections = [
        ("Sections", en_topics),
        ("中文", [("/zh/index.html", "中文首页"), *zh_topics]),
        ("Latest stories", [(p, a.title) for p, a, _ in by_date["en"][:8]]),
        ("From our partners", mirrors),
        ("Sponsored", spam_links),
        ("Coming soon", short_links),
        ("Staff area", private_links),
        ("Downloads", [(PDF_PATH, "Annual report 2025 (PDF)"), (PNG_PATH, "Site logo (PNG)"),
                       (MISSING_PATH, "An archived story that has since been removed")]),
        ("More", [("/archive.html", "Archive of every story")]),
    ]
    add("/index.html", "index", "en", data=_list_html(
        "en", f"{SITE_NAME}: news from towns that do not exist", index_sections,
        intro="Fictional local news in English and Chinese, generated for a data-platform demo.", extra=about))
    add("/zh/index.html", "index", "zh", data=_list_html(
        "zh", f"{SITE_NAME_ZH}中文版", [("栏目", zh_topics), ("最新报道", [(p, a.title) for p, a, _ in by_date["zh"][:8]])]))
    add("/archive.html", "index", "en", data=_list_html(
        "en", "Archive", [("English", [(p, a.title) for p, a, _ in by_date["en"]]),
                          ("中文", [(p, a.title) for p, a, _ in by_date["zh"]])]))

    # ---- binary, robots.txt, the missing page
    add(PDF_PATH, "binary", None, data=_pdf())
    add(PNG_PATH, "binary", None, data=_png())
    add("/robots.txt", "robots", None, data=b"# Demo Daily (fictional demo site)\nUser-agent: *\nDisallow: /private/\n")
    add(MISSING_PATH, "missing", "en")
    entries.sort(key=lambda e: e["path"])
    return files, entries


def generate_site(out_dir: Path) -> dict:
    """Write the demo site to ``out_dir/site/`` and its manifest to ``out_dir/manifest.json``.

    Deterministic and idempotent: the previous ``site/`` is replaced whole. Returns the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, entries = _build()
    counts: dict[str, int] = {}
    for e in entries:
        counts[e["kind"]] = counts.get(e["kind"], 0) + 1
    manifest = {"pages": entries, "counts": dict(sorted(counts.items()))}

    tmp = out_dir / f".site-tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel in sorted(files):
        p = tmp / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(files[rel])
        os.utime(p, (FIXED_MTIME, FIXED_MTIME))
    site = out_dir / "site"
    old = out_dir / f".site-old-{os.getpid()}"
    if site.exists():
        os.replace(site, old)
    os.replace(tmp, site)
    if old.exists():
        shutil.rmtree(old)
    atomic.write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest
