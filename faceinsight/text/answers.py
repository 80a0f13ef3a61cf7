"""Map an MLLM's free-text answers onto the characteristic vocabulary: a yes/no, a choice, an age or a description.

Plain phrase matching over a normalised answer (no NLP model), in five steps:

1. **Normalise**: lower case, curly quotes folded, markdown marks and underscores turned into spaces (so an echoed
   label name "No_Beard" reads "no beard"), hyphens inside words turned into spaces ("clean-shaven" -> "clean shaven",
   "mid-30s" -> "mid 30s").
2. **Refusals**: clauses that decline ("I can't determine ...", "As an AI ...", "I'm unable to identify a person's
   race") are blanked. When nothing answerable remains the answer is a refusal; when something does, it is parsed and
   marked hedged (a partial refusal).
3. **Mentions**: the phrase tables below, longest match first, give (characteristic, value) pairs. A mention's value
   flips for each negation before it in its clause ("no beard", "without glasses", "isn't smiling", "not wearing a
   hat"; two negations cancel) and for one after it ("glasses are not visible", "Eyeglasses: no"). A clause ends at
   punctuation and at "but", "and", "with", "although", ...: in "no glasses but a beard" only the glasses are negated.
4. **Hedges** ("probably", "might be", "appears to", "I think") are recorded; the value stands.
5. **Per task**: a yes/no answer is its leading yes/no word, else the mentions of the asked attribute (both must
   agree when both are there); a choice is its letter ("B", "(B) sad", "the answer is B") or the one option its words
   name; an age is the first number of years, range (its midpoint) or decade ("late twenties") that reads as an age
   ("2 eyes" does not).

Anything else is malformed, with a reason. Known limits are listed in docs/eval_text.md.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Literal

from faceinsight.vocab import GROUPS, age_to_bin

if TYPE_CHECKING:
    from faceinsight.text.qa import Question

Status = Literal["ok", "refused", "malformed"]

# ----------------------------------------------------------------------------- phrase tables (data)
#
# Characteristic names are faceinsight.vocab's, which follow the datasets' own label files: CelebA's 40 attributes
# (Liu et al., ICCV 2015, list_attr_celeba.txt), MAAD-Face's extra attributes (Terhoerst et al., 2021), FairFace's
# 7 races (Karkkainen and Joo, WACV 2021) and the 7 basic expressions of RAF-DB (Li et al., CVPR 2017).
#
# Phrases are lower-case regular expressions, matched on word boundaries in the normalised answer (hyphens inside
# words are spaces there: write "clean shaven", not "clean-shaven"). "yes" phrases assert the characteristic, "no"
# phrases assert its absence; a negation before a phrase flips either. One phrase may serve several characteristics
# ("clean shaven": no goatee, no mustache, no stubble, and No_Beard). Where phrases overlap the longest wins
# ("plump lips" is Big_Lips, not Chubby).

D = r"(?:(?:his|her|the|their|its|a|an) )?"  # an optional determiner before a noun
_GLASSES = ["eye ?glasses", "glasses", "spectacles", "specs", "sunglasses", "eyewear"]  # CelebA counts sunglasses
_MOUTH_OPEN = [
    r"mouth (?:is )?(?:slightly |partly |partially |a little |a bit |half )?open(?:ed)?",
    r"(?:slightly |partly |partially |half )?open mouth(?:ed)?",
    r"(?:parted|apart) lips",
    r"lips (?:are )?(?:slightly )?(?:parted|apart)",
]
_MOUTH_CLOSED = [
    r"(?:mouth|lips) (?:is |are )?(?:firmly )?(?:closed|shut)",
    r"closed (?:mouth|lips)",
    r"lips (?:are )?(?:pressed )?together",
    r"mouth (?:is )?not (?:slightly )?open",
]

# fmt: off
ATTRIBUTE_PHRASES: dict[str, dict[str, list[str]]] = {
    "5_o_Clock_Shadow": {
        "yes": [r"(?:5|five) o'? ?clock shadow", "stubble", "stubbly", "unshaven", "scruff", "scruffy"],
        "no": ["clean shaven"],
    },
    "Arched_Eyebrows": {"yes": [r"arched (?:eye ?)?brows"]},
    "Attractive": {
        "yes": ["attractive", "beautiful", "handsome", "pretty", "good looking", "gorgeous", "cute", "lovely"],
        "no": ["unattractive", "plain looking", "ugly"],
    },
    "Bags_Under_Eyes": {"yes": [f"bags under {D}eyes", r"(?:under )?eye bags", "dark circles", "puffy eyes"]},
    "Bald": {
        "yes": ["bald", "bald headed", r"shaved head", r"shaven head", f"no hair on {D}head", "hairless"],
        "no": ["full head of hair"],
    },
    "Bangs": {"yes": ["bangs", "fringe"]},
    "Big_Lips": {"yes": [r"(?:big|full|large|thick|plump|fleshy) lips"], "no": ["thin lips"]},
    "Big_Nose": {"yes": [r"(?:big|large|prominent|wide|broad) nose"], "no": [r"(?:small|little|narrow) nose"]},
    "Black_Hair": {"yes": [r"(?:jet )?black hair(?:ed)?", "raven hair"]},
    "Blond_Hair": {"yes": [r"blonde?(?: hair(?:ed)?)?", r"fair hair(?:ed)?", "golden hair", "platinum hair"]},
    "Blurry": {
        "yes": ["blurry", "blurred", "out of focus", "blur"],
        "no": [r"(?:sharp|clear|crisp) (?:image|photo|photograph|picture)", "in focus"],
    },
    "Brown_Hair": {"yes": [r"brown hair(?:ed)?", "brunette", "chestnut hair"]},
    "Bushy_Eyebrows": {
        "yes": [r"(?:bushy|thick|heavy|dense|full) (?:eye ?)?brows"],
        "no": [r"(?:thin|sparse) (?:eye ?)?brows"],
    },
    "Chubby": {"yes": ["chubby", "plump", "overweight", "heavyset"], "no": ["slim", "slender", "skinny"]},
    "Double_Chin": {"yes": ["double chin"]},
    "Eyeglasses": {"yes": _GLASSES},
    "Goatee": {"yes": ["goatee", "chin beard", "soul patch"], "no": ["clean shaven"]},
    "Gray_Hair": {
        "yes": [r"gr[ae]y hair(?:ed)?", r"silver hair(?:ed)?", r"white hair(?:ed)?", "graying", "greying",
                r"salt and pepper(?: hair)?"],
    },
    "Heavy_Makeup": {
        "yes": [r"(?:heavy |a lot of |lots of |dramatic |full )?make ?up", "cosmetics", "made up", "eyeliner",
                "mascara", r"eye ?shadow"],
        "no": [r"(?:light|minimal|subtle|natural|little) make ?up"],
    },
    "High_Cheekbones": {"yes": [r"(?:high|prominent|defined|pronounced|sharp) cheek ?bones"]},
    "Male": {
        "yes": ["male", "man", "men", "boy", "gentleman", "guy", "masculine"],
        "no": ["female", "woman", "women", "girl", "lady", "feminine"],
    },
    "Mouth_Slightly_Open": {"yes": _MOUTH_OPEN, "no": _MOUTH_CLOSED},
    "Mustache": {"yes": [r"mustached?", r"moustached?"], "no": ["clean shaven"]},
    "Narrow_Eyes": {
        "yes": [r"narrow(?:ed)? eyes", "squinting", "squint", "squinted", "squinty eyes", "small eyes"],
        "no": [r"(?:wide|big|large|wide open) eyes", "wide eyed"],
    },
    "No_Beard": {"yes": ["clean shaven", "beardless"], "no": [r"beard(?:ed|s)?", "facial hair"]},
    "Oval_Face": {"yes": [r"oval(?: shaped)? face", "oval"]},
    "Pale_Skin": {
        "yes": [r"pale(?: skin(?:ned)?| complexion)?", "porcelain skin", r"very (?:fair|light) skin"],
        "no": [r"(?:tanned|tan|dark|olive) (?:skin|complexion)", "tanned"],
    },
    "Pointy_Nose": {"yes": [r"(?:pointy|pointed|sharp) nose"]},
    "Receding_Hairline": {"yes": [r"receding(?: hair ?line| hair)?", "balding", "thinning hair", r"high hair ?line"]},
    "Rosy_Cheeks": {"yes": [r"(?:rosy|flushed|red|pink|ruddy) cheeks", "rosy", "blushing"]},
    "Sideburns": {"yes": [r"side ?burns", "mutton chops"]},
    "Smiling": {
        "yes": [r"smil(?:e|es|ing|ed)", r"grin(?:s|ning|ned)?", "beaming", r"laugh(?:s|ing)?"],
        "no": [r"frown(?:s|ing)?", r"(?:neutral|serious|stern|blank) (?:expression|face|look)", "straight face",
               "expressionless", r"pout(?:ing)?"],
    },
    "Straight_Hair": {"yes": [r"straight hair(?:ed)?", "sleek hair"]},
    "Wavy_Hair": {"yes": [r"wavy(?: hair(?:ed)?)?", r"curly(?: hair(?:ed)?)?", "curls"]},  # CelebA has no "curly"
    "Wearing_Earrings": {"yes": [r"ear ?rings?", r"ear studs?"]},
    "Wearing_Hat": {
        "yes": [r"hats?", r"caps?", "beanie", "headwear", "fedora", "helmet", "beret", "bonnet", "turban"],
    },
    "Wearing_Lipstick": {"yes": ["lipstick", r"lip (?:colou?r|gloss)", "painted lips"]},
    "Wearing_Necklace": {"yes": [r"necklaces?", "pendant", "choker", r"(?:gold|silver) chain"]},
    "Wearing_Necktie": {"yes": [r"neck ?ties?", r"ties?", r"bow ties?", "cravat"]},
    "Young": {
        "yes": ["young", "youthful", "young looking"],
        "no": ["elderly", r"old(?:er)? (?:man|woman|person|lady|gentleman|adult)", "senior", "middle aged"],
    },
    # MAAD-Face's attributes beyond CelebA's
    "Middle_Aged": {"yes": ["middle aged"]},
    "Senior": {"yes": ["elderly", "senior", r"old (?:man|woman|person|lady|gentleman)", "older adult"]},
    "Asian": {"yes": [r"(?:east |south ?east )?asian"]},
    "White": {"yes": ["caucasian", r"white (?:man|woman|person|male|female|skin(?:ned)?)"]},
    "Black": {"yes": [r"black (?:man|woman|person|male|female)", "african american", "african"]},
    "Shiny_Skin": {"yes": [r"(?:shiny|oily|glossy|greasy) (?:skin|face|forehead)"]},
    "Square_Face": {"yes": [r"square(?: shaped)? face", r"square jaw(?:ed|line)?", "angular face"]},
    "Round_Face": {"yes": [r"round(?: shaped)? face", "round faced"]},
    "Obstructed_Forehead": {"yes": [r"forehead (?:is )?(?:partly |partially )?(?:covered|obstructed|hidden)"]},
    "Fully_Visible_Forehead": {
        "yes": [r"forehead (?:is )?(?:fully |clearly )?visible", r"(?:visible|exposed|open) forehead"],
    },
    "Brown_Eyes": {"yes": [r"brown eye[sd]?", "hazel eyes"]},
    "Mouth_Closed": {"yes": _MOUTH_CLOSED, "no": _MOUTH_OPEN},
    "No_Eyewear": {"no": _GLASSES},
}
# fmt: on

# Phrases that would otherwise be read as a characteristic: they consume their words and assert nothing.
ATTRIBUTE_IGNORE = ["hair tie", r"years? old", "tie dye"]

# In a describe answer an attribute nobody mentions is absent, except these "absence" attributes, which hold unless
# one of the listed attributes is asserted (no beard is mentioned and none of these: No_Beard).
DESCRIBE_DEFAULT_TRUE: dict[str, tuple[str, ...]] = {
    "No_Beard": ("Goatee", "Mustache", "Sideburns"),
    "No_Eyewear": ("Eyeglasses",),
    "Mouth_Closed": ("Mouth_Slightly_Open",),
}

# Groups: phrases naming each member (vocab.GROUPS); "no" phrases are not needed there.
# fmt: off
GROUP_PHRASES: dict[str, dict[str, list[str]]] = {
    "gender": {
        "Male": ["male", "man", "men", "boy", "gentleman", "guy", "masculine"],
        "Female": ["female", "woman", "women", "girl", "lady", "feminine"],
    },
    "race": {
        "Race_White": ["white", "caucasian", "european"],
        "Race_Black": ["black", "african american", "african"],
        "Race_Latino_Hispanic": [r"latin[oax]", "hispanic", r"latino ?/ ?hispanic"],
        "Race_East_Asian": ["east asian", "chinese", "japanese", "korean"],
        "Race_Southeast_Asian": [r"south ?east asian", "vietnamese", "thai", r"filipin[oa]", "indonesian",
                                 "malaysian"],
        "Race_Indian": ["indian", "south asian"],
        "Race_Middle_Eastern": ["middle eastern", r"arab(?:ic)?", "persian"],
    },
    "expression": {
        "Expr_Surprise": [r"surprised?", "shocked", "astonished", "amazed", "startled", "stunned"],
        "Expr_Fear": [r"fear(?:ful)?", "afraid", "scared", "frightened", "terrified"],
        "Expr_Disgust": [r"disgust(?:ed)?", "repulsed", "revolted", "grossed out"],
        "Expr_Happiness": [r"happy", "happiness", r"joy(?:ful)?", r"smil(?:e|es|ing)", r"grin(?:s|ning)?",
                           r"laugh(?:s|ing)?", "cheerful", "delighted"],
        "Expr_Sadness": ["sad", "sadness", "unhappy", r"sorrow(?:ful)?", "crying", "tearful", "depressed",
                         "downcast"],
        "Expr_Anger": ["angry", "anger", "furious", "mad", "irritated", "annoyed", "enraged"],
        "Expr_Neutral": ["neutral", "calm", "expressionless", r"blank (?:expression|face|stare)", "straight face",
                         r"no (?:particular |clear |strong |obvious |visible )?(?:expression|emotion)"],
    },
}
# fmt: on
GROUP_IGNORE: dict[str, list[str]] = {
    # colours that are not a race: hair, clothes, backgrounds
    "race": [
        r"(?:white|black) (?:hair(?:ed)?|background|shirt|t shirt|top|jacket|dress|clothes|clothing|wall|"
        r"teeth|eyes|and white)",
        "black and white",
    ],
}  # fmt: skip

# Ages that words give (years, as a range whose midpoint is the estimate).
AGE_WORDS: dict[str, tuple[float, float]] = {
    r"(?:baby|infant|newborn)": (0, 2),
    "toddler": (1, 3),
    r"(?:child|kid)": (3, 12),
    r"(?:teenager|teen|adolescent)": (13, 19),
}
DECADES = {"teens": 10, "twenties": 20, "thirties": 30, "forties": 40, "fifties": 50, "sixties": 60,
           "seventies": 70, "eighties": 80, "nineties": 90}  # fmt: skip

NEGATION = re.compile(
    r"\b(?:no|not|never|without|none|neither|nor|cannot|lacks?|lacking|absence of|free of|unlikely|"
    r"dont|doesnt|isnt|arent|wasnt|werent|hasnt|havent|cant)\b|n't\b"
)
POST_NEGATION = re.compile(
    r"\s*(?:(?:is|are|was|were|do|does)\s*(?:not|n't)|not)\s+(?:present|visible|seen|there|worn|apparent|evident|"
    r"noticeable|detected|shown)\b|\s*(?:is|are|was|were)\s+(?:absent|missing)\b"
)
HEDGE = re.compile(
    r"\b(?:probably|possibly|perhaps|maybe|might|may|could|likely|unlikely|seems?|seemingly|appears?|apparently|"
    r"presumably|i think|i believe|i guess|i'd say|looks like|not sure|not certain|uncertain|hard to (?:say|tell)|"
    r"difficult to (?:say|tell)|it is possible|it's possible)\b"
)
REFUSAL = re.compile(
    r"\bas an ai\b|\bas a language model\b|\bi(?: am|'m) (?:sorry|afraid)\b|\bsorry\b|\bi apologi[sz]e\b"
    r"|\b(?:cannot|can't|can not|could not|couldn't|unable to|not able to|won't|will not|impossible to|"
    r"not possible to|no way to|refrain from|not comfortable)\b(?: [\w']+){0,4}? (?:determine|identify|tell|say|"
    r"assess|infer|judge|guess|know|answer|provide|make|comment|speculate|estimate|classify|help|assist|discern|"
    r"categori[sz]e|label|predict|be determined|verify|confirm)\b"
    r"|\b(?:hard|difficult|impossible) to (?:tell|say|determine|judge|know)\b|\bnot (?:sure|certain)\b"
    r"|\bi (?:don't|do not) know\b|\bunclear\b|\bnot appropriate\b|\binappropriate\b"
    r"|\b(?:make|making) (?:any )?assumptions\b"
)
CLAUSE_BREAK = re.compile(
    r"[.;:!?,()\[\]\n]|\b(?:but|however|although|though|yet|whereas|while|and|with|plus|also|except)\b"
)


# ----------------------------------------------------------------------------- results


@dataclass
class Parsed:
    """One parsed answer. ``values``: characteristic -> asserted truth (a group answer names its member; an age its
    bin); ``age`` in years for the age task; ``hedged`` when it hedges or partly refuses; ``reason`` why it is
    malformed; ``contradictions``: characteristics a description asserts both ways."""

    status: Status
    values: dict[str, bool] = field(default_factory=dict)
    age: float | None = None
    hedged: bool = False
    reason: str = ""
    contradictions: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _malformed(reason: str, refused: bool) -> Parsed:
    return Parsed("refused", reason="refusal") if refused else Parsed("malformed", reason=reason)


@dataclass(frozen=True)
class Mention:
    """A characteristic named in an answer, with the value its words give it (negations applied)."""

    characteristic: str
    value: bool
    start: int
    end: int


# ----------------------------------------------------------------------------- text handling


def normalize(text: str) -> str:
    """Lower case, folded quotes, no markdown marks or underscores, hyphens inside words as spaces, single spaces."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = t.translate(str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-"}))
    t = re.sub(r"[*_`#>|]+", " ", t)
    t = re.sub(r"(?<=[a-z])-(?=[a-z0-9])|(?<=[0-9])-(?=[a-z])", " ", t)
    return re.sub(r"\s+", " ", t).strip()


@dataclass
class _Text:
    text: str  # normalised, refusal clauses blanked
    refused: bool  # some clause refused
    hedged: bool


def _clauses(text: str) -> list[tuple[int, int]]:
    """Spans of the clauses of ``text`` (between CLAUSE_BREAK matches)."""
    spans, start = [], 0
    for m in CLAUSE_BREAK.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _prepare(answer: str) -> _Text:
    text = normalize(answer)
    refused = False
    for s, e in _clauses(text):
        if REFUSAL.search(text[s:e]):
            text = text[:s] + " " * (e - s) + text[e:]
            refused = True
    hedged = refused or bool(HEDGE.search(text))
    return _Text(text, refused, hedged)


PhraseTable = list[tuple[re.Pattern[str], tuple[tuple[str, bool], ...]]]


def _compile(sides: Iterable[tuple[str, bool, Sequence[str]]], ignore: Sequence[str]) -> PhraseTable:
    targets: dict[str, list[tuple[str, bool]]] = {}
    for name, value, phrases in sides:
        for phrase in phrases:
            targets.setdefault(phrase, []).append((name, value))
    for phrase in ignore:
        targets.setdefault(phrase, [])
    return [(re.compile(rf"\b(?:{p})\b"), tuple(t)) for p, t in targets.items()]


@cache
def attribute_table() -> PhraseTable:
    sides = [(n, side == "yes", ps) for n, d in ATTRIBUTE_PHRASES.items() for side, ps in d.items()]
    return _compile(sides, ATTRIBUTE_IGNORE)


@cache
def group_table(group: str) -> PhraseTable:
    return _compile([(n, True, ps) for n, ps in GROUP_PHRASES[group].items()], GROUP_IGNORE.get(group, []))


_EXPLICIT = re.compile(r"\s*[:=-]\s*(yes|no|none|absent|present|true|false|visible|not visible)\b")


def find_mentions(text: str, table: PhraseTable) -> list[Mention]:
    """Characteristics named in normalised ``text``, longest phrase first, each with its value after negations."""
    found = [(m.start(), m.end(), t) for pattern, t in table for m in pattern.finditer(text) if m.end() > m.start()]
    found.sort(key=lambda f: (f[0] - f[1], f[0]))
    chosen: list[tuple[int, int, tuple[tuple[str, bool], ...]]] = []
    for f in found:
        if all(f[1] <= c[0] or f[0] >= c[1] for c in chosen):
            chosen.append(f)
    chosen.sort()
    clauses = _clauses(text)
    out: list[Mention] = []
    for start, end, targets in chosen:
        if not targets:
            continue  # an ignored phrase
        after = text[end:]
        explicit = _EXPLICIT.match(after)  # list style: "Eyeglasses: no"
        if explicit:
            flip = explicit.group(1) in ("no", "none", "absent", "false", "not visible")
        elif re.match(r"\s*:", after):
            continue  # a heading, as in "Eyeglasses: the person wears none"
        else:
            lo, hi = next(((s, e) for s, e in clauses if s <= start < e), (0, len(text)))
            prefix = list(text[lo:start])
            for s, e, _ in chosen:  # negation words inside other phrases ("no hair on his head") do not count
                if lo <= s < start:
                    prefix[s - lo : min(e, start) - lo] = " " * (min(e, start) - s)
            flip = (_negations("".join(prefix)) + bool(POST_NEGATION.match(text[end:hi]))) % 2 == 1
        out += [Mention(name, value != flip, start, end) for name, value in targets]
    return out


def _negations(prefix: str) -> int:
    """Negations in a clause before a mention; "neither ... nor" (or a lone "nor") negates once."""
    words = NEGATION.findall(prefix)
    n = sum(w != "nor" for w in words)
    return n if n or "nor" not in words else 1


# ----------------------------------------------------------------------------- yes/no

_FILLER = re.compile(
    r"^(?:(?:but|however|though|although|still|anyway|well|hmm+|ok(?:ay)?|the answer is|my answer is|answer|"
    r"i would say|i'd say|i think|i believe|i guess|"
    r"probably|most likely|likely|possibly|perhaps|maybe|definitely|certainly|absolutely|clearly|"
    r"based on (?:the|this) image)\b[\s\W]*)+"
)
_LEAD_YES = re.compile(r"^(?:yes|yeah|yep|yup|yea|correct|true|affirmative|indeed|of course)\b|^(?:y|so)\W*$")
_LEAD_NO = re.compile(
    r"^(?:nope|nah|false|negative)\b|^n\W*$|^not(?:\W*$|\s+(?:really|at all|quite|likely|that i can see)\b)"
    r"|^i (?:don't|do not) (?:think|believe) so\b"
)
_NO_WORD = re.compile(r"^no\b(?P<punct>[^\w]*)(?P<next>[\w']+)?")
_PRONOUNS = {"she", "he", "they", "it", "i", "the", "this", "that", "there", "not", "her", "his", "their", "its",
             "we", "you", "this person", "person"}  # fmt: skip
_ANSWER_IS = re.compile(r"\b(?:answer|response)\s*(?:is|would be|:)?\s*\W{0,2}(yes|no)\b")


def _leading_yes_no(text: str) -> tuple[bool | None, str]:
    """The answer's leading yes/no word and the text after it (``None`` and the text when there is none). A leading
    "no" followed by a noun is a determiner ("No hat.") and is left to the mentions."""
    body = _FILLER.sub("", text.lstrip(" \t\"'.,:;-")).strip()
    for pattern, value in ((_LEAD_YES, True), (_LEAD_NO, False)):
        if m := pattern.match(body):
            return value, body[m.end() :]
    m = _NO_WORD.match(body)
    if m and (m.group("next") is None or m.group("punct").strip() or m.group("next") in _PRONOUNS):
        return False, body[m.end("punct") :]
    return None, body


def parse_yes_no(answer: str, characteristic: str, inverted: bool = False) -> Parsed:
    """A yes/no answer about ``characteristic``; ``inverted``: the question asked about its absence ("yes" to
    "Does this person have a beard?" means No_Beard is false)."""
    t = _prepare(answer)
    lead, rest = _leading_yes_no(t.text)
    if lead is None and (m := _ANSWER_IS.search(t.text)):
        lead = m.group(1) == "yes"
    said = {m.value for m in find_mentions(rest, attribute_table()) if m.characteristic == characteristic}
    if len(said) > 1:
        return Parsed("malformed", reason=f"says {characteristic} both ways")
    content = said.pop() if said else None
    stated = None if lead is None else lead != inverted
    if stated is not None and content is not None and stated != content:
        return Parsed("malformed", reason=f"its {'yes' if lead else 'no'} says {characteristic} is {stated} but its "
                                          f"words say {content}")  # fmt: skip
    value = stated if stated is not None else content
    if value is None:
        return _malformed(f"no yes/no and no mention of {characteristic}", t.refused)
    return Parsed("ok", {characteristic: value}, hedged=t.hedged)


# ----------------------------------------------------------------------------- descriptions


def parse_description(answer: str, attributes: Sequence[str]) -> Parsed:
    """A free description, read for every one of ``attributes``: a mentioned attribute takes the value its words give
    it, an unmentioned one is absent (DESCRIBE_DEFAULT_TRUE aside). Asserted both ways: present, and listed in
    ``contradictions``."""
    t = _prepare(answer)
    wanted = set(attributes)
    said: dict[str, set[bool]] = {}
    for m in find_mentions(t.text, attribute_table()):
        if m.characteristic in wanted:
            said.setdefault(m.characteristic, set()).add(m.value)
    if not said:
        return _malformed("mentions none of the attributes", t.refused)
    values = {a: True in said[a] if a in said else False for a in attributes}
    if "Male" in wanted and "Male" not in said and (pronoun := pronoun_gender(t.text)) is not None:
        values["Male"] = pronoun == "Male"  # "He has a goatee": a man, though no gender word is there
    for a, blockers in DESCRIBE_DEFAULT_TRUE.items():
        if a in wanted and a not in said:
            values[a] = not any(values.get(b, False) for b in blockers)
    contradictions = tuple(a for a in attributes if len(said.get(a, ())) > 1)
    return Parsed("ok", values, hedged=t.hedged, contradictions=contradictions)


# ----------------------------------------------------------------------------- choices


def _letters(text: str, n: int, members: Sequence[str], group: str) -> set[int]:
    """Option letters an answer gives (indices below ``n``); an explicit "the answer is X" wins over the rest."""
    valid = "abcdefghij"[:n]
    explicit = re.findall(rf"\b(?:answer|option|choice|letter)\s*(?:is|would be|:)?\s*\(?([{valid}])\)?(?![\w'])", text)
    if explicit:
        return {valid.index(x) for x in explicit}
    found = set(re.findall(rf"^\(?([{valid}])\)?(?:[.):]|\s*$)", text))
    found |= set(re.findall(rf"\(([{valid}])\)", text))
    found |= set(re.findall(rf"(?:^|\s)([{valid.replace('a', '')}])(?:[.)]|\s*$)", text))
    for pair in re.findall(rf"(?:^|\s)\(?([{valid}])\)?\s*(?:or|and|/)\s*\(?([{valid}])\)?(?![\w'])", text):
        found |= set(pair)  # "A or B"
    if m := re.match(rf"^([{valid}])\s+(.*)", text):  # "B sadness", not the article in "a happy face"
        named = {x.characteristic for x in find_mentions(m.group(2), group_table(group)) if x.value}
        if members[valid.index(m.group(1))] in named:
            found.add(m.group(1))
    return {valid.index(x) for x in found}


def parse_choice(answer: str, group: str, lettered: bool) -> Parsed:
    """One member of ``group`` (vocab.GROUPS order = option order): by letter when ``lettered``, else by its words."""
    members = GROUPS[group]
    t = _prepare(answer)
    text = t.text.strip(" \"'")
    mentions = find_mentions(text, group_table(group))
    named = {m.characteristic for m in mentions if m.value}
    denied = {m.characteristic for m in mentions if not m.value} - named
    letters = _letters(text, len(members), members, group) if lettered else set()
    if len(letters) > 1:
        return Parsed("malformed", reason=f"several options: {sorted('ABCDEFGHIJ'[i] for i in letters)}")
    if letters:
        member = members[letters.pop()]
        if named and member not in named:
            return Parsed("malformed", reason=f"its letter says {member} but its words say {sorted(named)}")
        return Parsed("ok", {member: True}, hedged=t.hedged)
    if len(named) > 1:
        return Parsed("malformed", reason=f"names several options: {sorted(named)}")
    if not named and denied and len(left := [m for m in members if m not in denied]) == 1:
        named = set(left)  # "not male": the one option not denied
    if not named and group == "gender" and (pronoun := pronoun_gender(text)) is not None:
        named = {pronoun}  # pronouns, when no gender word is there
    if not named:
        return _malformed(f"names no {group} option", t.refused)
    return Parsed("ok", {named.pop(): True}, hedged=t.hedged)


def pronoun_gender(text: str) -> str | None:
    """``Male`` or ``Female`` when the text's third-person pronouns are all of one gender, else None."""
    he = re.search(r"\b(?:he|him|his|himself)\b", text)
    she = re.search(r"\b(?:she|her|hers|herself)\b", text)
    return None if bool(he) == bool(she) else "Male" if he else "Female"


# ----------------------------------------------------------------------------- ages

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
          "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_WORD_NUMBER = re.compile(rf"\b(?:({'|'.join(_TENS)})(?: ({'|'.join(_UNITS[1:10])}))?|({'|'.join(_UNITS)}))\b")
_NUMBER = r"\d{1,3}(?:\.\d+)?"
_AGE_UNIT = re.compile(r"\s*(?:years?|yrs?|y\.?o\b\.?|yo)\b")
_AGE_FOLLOW = re.compile(r"\s*(?:ish|or so|plus|something)\b|\s*\+")
_AGE_CUE = re.compile(
    r"(?:\b(?:age|aged|about|around|approximately|approx|roughly|circa|maybe|perhaps|probably|likely|like|is|be|looks|"
    r"look|"
    r"appears|seems|estimate|estimated|guess|say|am|are|was|over|under|nearly|almost|least|most|between)|'s|~|:|=)\s*$"
)


def _digits(text: str) -> str:
    """Number words as digits: "twenty five" -> "25", "thirty" -> "30"."""

    def value(m: re.Match[str]) -> str:
        if m.group(3):
            return str(_UNITS.index(m.group(3)))
        return str(20 + 10 * _TENS.index(m.group(1)) + (_UNITS.index(m.group(2)) if m.group(2) else 0))

    return _WORD_NUMBER.sub(value, text)


def _decade_span(decade: int, part: str | None) -> tuple[float, float]:
    lo, hi = (13, 19) if decade == 10 else (decade, decade + 9)
    third = (hi - lo) / 3
    if part == "early":
        return lo, lo + third
    if part == "mid":
        return lo + third, hi - third
    if part == "late":
        return hi - third, hi
    return lo, hi


def parse_age(answer: str) -> Parsed:
    """An age in years: the first number of years, range (midpoint), decade ("late twenties") or age word that reads
    as an age. A bare number counts when a unit follows ("30 years"), a cue precedes ("about 30", "is 30"), or it is
    the whole answer; a number followed by another word ("2 eyes") is not an age."""
    t = _prepare(answer)
    text = _digits(t.text)
    candidates: list[tuple[int, float]] = []  # (position, years)
    taken: list[tuple[int, int]] = []
    for m in re.finditer(rf"(?<![\d.])({_NUMBER})\s*(?:-|to|or|and)\s*({_NUMBER})(?![\d])", text):
        a, b = float(m.group(1)), float(m.group(2))
        after = text[m.end() :]
        if a < b <= 120 and b - a <= 20 and not (re.match(r"\s*[a-z]", after) and not _AGE_UNIT.match(after)):
            candidates.append((m.start(), (a + b) / 2))
            taken.append(m.span())
    decades = "|".join(DECADES)
    for m in re.finditer(rf"\b(?:(early|mid|late)\s+)?(?:({decades})|([1-9])0\s*'?s|([1-9])0 something)\b", text):
        decade = DECADES[m.group(2)] if m.group(2) else 10 * int(m.group(3) or m.group(4))
        lo, hi = _decade_span(decade, m.group(1))
        candidates.append((m.start(), (lo + hi) / 2))
        taken.append(m.span())
    for pattern, (lo, hi) in AGE_WORDS.items():
        for m in re.finditer(rf"\b{pattern}s?\b", text):
            candidates.append((m.start(), (lo + hi) / 2))
    bare = re.sub(r"[^\w.]+", " ", HEDGE.sub(" ", text)).strip(" .")
    for m in re.finditer(rf"(?<![\d.])({_NUMBER})(?!\d|\.\d)", text):
        if any(s <= m.start() < e for s, e in taken):
            continue
        years, before, after = float(m.group(1)), text[: m.start()], text[m.end() :]
        if years > 120 or re.search(r"(?:\bnot|n't)\s*$", before):
            continue
        if _AGE_UNIT.match(after) or _AGE_FOLLOW.match(after):
            candidates.append((m.start(), years))
        elif re.match(r"\s*[a-z]", after):
            continue  # "2 eyes", "3 people"
        elif _AGE_CUE.search(before) or bare == m.group(1):
            candidates.append((m.start(), years))
    if not candidates:
        return _malformed("no age in years", t.refused)
    years = min(candidates)[1]
    return Parsed("ok", {age_to_bin(years): True}, age=years, hedged=t.hedged)


# ----------------------------------------------------------------------------- dispatch


def parse_answer(question: Question, answer: str) -> Parsed:
    """Parse ``answer`` to ``question`` (a ``faceinsight.text.qa.Question``) by its task and format."""
    if not answer.strip():
        return Parsed("malformed", reason="empty answer")
    if question.task == "attribute":
        if question.format == "text":  # a description: its options are the attributes it is scored on
            return parse_description(answer, question.options)
        return parse_yes_no(answer, question.characteristic, question.inverted)
    if question.task == "age":
        return parse_age(answer)
    return parse_choice(answer, question.task, lettered=question.format == "letter")
