"""What a person asks for: unsubscribe and rights keywords, negations, language."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

from suppression.replies.model import Language, RequestKind
from suppression.replies.text import WORD_CHARS


class Rule(NamedTuple):
    language: Language
    label: str  # goes into reasons as "keyword:<label>"
    pattern: re.Pattern[str]


def make_rules(language: Language, *entries: tuple[str, str]) -> tuple[Rule, ...]:
    """(label, regex) pairs; the regex must match whole words of the folded text."""
    return tuple(
        Rule(language, label, re.compile(rf"(?<!\w)(?:{regex})(?!\w)")) for label, regex in entries
    )


# Unsubscribe requests in free text.
UNSUBSCRIBE_RULES: tuple[Rule, ...] = (
    *make_rules(
        "en",
        ("unsubscribe", r"un-?subscri\w*"),
        ("remove me", r"remove\s+(?:me|us)|remove\s+my\s+(?:e-?mail\s+)?address"),
        ("take me off", r"take\s+(?:me|us|my\s+(?:e-?mail\s+)?address)\s+off"),
        ("stop sending", r"stop\s+(?:sending|e-?mailing|mailing|spamming)"),
        ("opt out", r"opt(?:-|\s)?out"),
        ("no more emails", r"no\s+more\s+(?:e-?mails?|mails?|newsletters?)"),
        ("do not email me", r"(?:do\s+not|don't)\s+(?:e-?mail|send|contact)\s+me"),
    ),
    *make_rules(
        "nl",
        ("uitschrijven", r"uitschrijv\w*|uitgeschreven|schrijf\s+(?:mij|me|ons)\s+(?:\S+\s+)?uit"),
        ("afmelden", r"afmeld\w*|afgemeld|meld\s+(?:mij|me|ons)\s+(?:\S+\s+)?af"),
        ("verwijder mij", r"verwijder\s+(?:mij|me|ons)|verwijderd\s+worden"),
        (
            "geen mails meer",
            r"geen\s+(?:e-?mails?|mails?|nieuwsbrie(?:f|ven)|berichten|reclame)\s+meer",
        ),
        ("stop met mailen", r"stop\s+(?:met\s+)?(?:e-?mailen|mailen|sturen)"),
    ),
    *make_rules(
        "fr",
        ("desinscrire", r"desinscri\w*|se\s+desinscrire"),
        ("desabonner", r"desabonn\w*"),
        (
            "ne plus recevoir",
            r"ne\s+(?:\S+\s+){0,2}(?:plus|pas|jamais)\s+(?:\S+\s+)?recevoir"
            r"|ne\s+plus\s+m'envoyer",
        ),
        (
            "retirez-moi",
            r"(?:retire[rz]|supprime[rz]|enleve[rz])(?:-|\s)moi"
            r"|me\s+(?:retirer|supprimer|enlever)\s+de\s+(?:la|votre|vos|cette)",
        ),
        ("plus de mails", r"plus\s+(?:de|d')\s*(?:e-?mails?|mails?|courriels?|newsletters?)"),
    ),
    *make_rules(
        "de",
        ("abmelden", r"abmeld\w*|melden\s+sie\s+mich\s+(?:\S+\s+)?ab"),
        ("abbestellen", r"abbestell\w*"),
        ("austragen", r"austrag\w*|ausgetragen|tragen\s+sie\s+mich\s+(?:\S+\s+)?aus"),
        (
            "keine e-mails mehr",
            r"keine\s+(?:weiteren\s+)?(?:e-?mails?|mails?|newsletter|nachrichten|werbung)\s+mehr",
        ),
        ("nicht mehr zusenden", r"nicht\s+mehr\s+(?:zusenden|zuschicken|senden|schicken)"),
    ),
)

# Data-subject rights requests, in the order they win when several match.
RIGHTS_RULES: tuple[tuple[RequestKind, tuple[Rule, ...]], ...] = (
    (
        "rights_erase",
        (
            *make_rules(
                "nl",
                ("vergeten", r"vergeten\s+(?:te\s+)?worden|vergeet\s+(?:mij|me)"),
                ("recht op vergetelheid", r"recht\s+op\s+vergetelheid|recht\s+om\s+vergeten"),
                (
                    "verwijder mijn gegevens",
                    r"(?:verwijder|wis)\s+(?:al\s+|alle\s+)?mijn\s+(?:persoons)?gegevens"
                    r"|(?:persoons)?gegevens\s+(?:te\s+|laten\s+)?(?:verwijderen|wissen)"
                    r"|verwijdering\s+van\s+(?:al\s+|alle\s+)?mijn",
                ),
            ),
            *make_rules(
                "en",
                (
                    "delete my data",
                    r"(?:delete|erase|remove|wipe)\s+(?:all\s+)?(?:of\s+)?my\s+(?:personal\s+)?"
                    r"(?:data|information|details|account)",
                ),
                ("right to be forgotten", r"right\s+to\s+(?:be\s+forgotten|erasure)"),
                ("erasure", r"erasure"),
            ),
            *make_rules(
                "fr",
                (
                    "supprimer mes donnees",
                    r"(?:supprime[rz]?|efface[rz]?)\s+(?:toutes\s+)?(?:mes|les)\s+"
                    r"(?:donnees|informations|coordonnees)"
                    r"|(?:suppression|effacement)\s+de\s+(?:toutes\s+)?mes\s+donnees",
                ),
                ("droit a l'oubli", r"droit\s+a\s+l'(?:oubli|effacement)"),
            ),
            *make_rules(
                "de",
                (
                    "loschen sie meine daten",
                    r"lo(?:e)?sch\w*\s+sie\s+(?:bitte\s+)?(?:alle\s+)?meine\s+"
                    r"(?:personenbezogenen\s+)?daten"
                    r"|meine\s+(?:personenbezogenen\s+)?daten\s+(?:zu\s+)?lo(?:e)?schen"
                    r"|lo(?:e)?schung\s+(?:aller\s+|meiner\s+)",
                ),
                ("recht auf vergessenwerden", r"recht\s+auf\s+(?:vergessen\w*|lo(?:e)?schung)"),
            ),
        ),
    ),
    (
        "rights_object",
        (
            *make_rules(
                "nl",
                ("bezwaar", r"bezwaar\w*"),
                (
                    "hoe komt u aan mijn adres",
                    r"hoe\s+(?:komt|kwam|komen|bent|zijn)\s+(?:u|jullie|je)\s+aan\s+mijn"
                    r"|waar\s+(?:heeft|hebben|heb)\s+(?:u|jullie|je)\s+mijn\s+\S*adres",
                ),
            ),
            *make_rules(
                "en",
                ("object to", r"object\s+to|objection"),
                (
                    "where did you get my address",
                    r"(?:where|how)\s+did\s+you\s+(?:get|obtain|find|buy)\s+my",
                ),
            ),
            *make_rules(
                "fr",
                ("opposition", r"opposition|m'oppose\w*|je\s+m'oppose"),
                (
                    "ou avez-vous eu mon adresse",
                    r"(?:ou|comment)\s+avez(?:-|\s)?vous\s+(?:eu|obtenu|trouve|recupere)\s+mon",
                ),
            ),
            *make_rules(
                "de",
                ("widerspruch", r"widerspruch\w*|widerspreche\w*"),
                ("woher haben sie meine adresse", r"woher\s+haben\s+sie\s+meine"),
            ),
        ),
    ),
    (
        "rights_access",
        (
            *make_rules(
                "nl",
                ("inzage", r"inzage\w*"),
                ("welke gegevens", r"welke\s+(?:persoons)?gegevens"),
                (
                    "kopie van mijn gegevens",
                    r"kopie\s+van\s+(?:al\s+|alle\s+)?(?:mijn|de)\s+(?:persoons)?gegevens",
                ),
            ),
            *make_rules(
                "en",
                (
                    "copy of my data",
                    r"cop(?:y|ies)\s+of\s+(?:all\s+)?(?:my|the)\s+(?:personal\s+)?"
                    r"(?:data|information)",
                ),
                (
                    "access to my data",
                    r"access\s+to\s+(?:all\s+)?my\s+(?:personal\s+)?(?:data|information)"
                    r"|(?:subject|data)\s+access\s+request",
                ),
                (
                    "what data do you hold",
                    r"what\s+(?:personal\s+)?(?:data|information)\s+(?:do|does)\s+\S+\s+"
                    r"(?:hold|have|store|keep)",
                ),
            ),
            *make_rules(
                "fr",
                (
                    "acces a mes donnees",
                    r"acces\s+a\s+(?:toutes\s+)?mes\s+donnees|droit\s+d'acces",
                ),
                ("copie de mes donnees", r"copie\s+de\s+(?:toutes\s+)?mes\s+donnees"),
                ("quelles donnees", r"quelles\s+(?:sont\s+les\s+)?donnees"),
            ),
            *make_rules(
                "de",
                ("auskunft", r"auskunft\w*"),
                ("kopie meiner daten", r"kopie\s+(?:aller\s+)?meiner\s+(?:\w+\s+)?daten"),
                ("welche daten", r"welche\s+(?:personenbezogenen\s+)?daten"),
            ),
        ),
    ),
    (
        "rights_rectify",
        (
            *make_rules(
                "nl",
                ("corrigeren", r"corrigeer\w*|corrigeren|rectificatie"),
                (
                    "wijzig mijn gegevens",
                    r"wijzig\w*\s+(?:van\s+)?mijn\s+(?:gegevens|naam|adres)"
                    r"|(?:mijn\s+)?gegevens\s+(?:aan\s*)?passen",
                ),
            ),
            *make_rules(
                "en",
                ("rectify", r"rectify|rectification"),
                ("correct my", r"correct\s+my"),
                (
                    "update my details",
                    r"update\s+my\s+(?:personal\s+)?(?:data|details|name|information)"
                    r"|my\s+name\s+is\s+(?:misspelled|misspelt|spelled\s+wrong|wrong|incorrect)",
                ),
            ),
            *make_rules(
                "fr",
                ("rectifier", r"rectifie[rz]?|corrige[rz]\s+mes"),
                (
                    "modifier mes donnees",
                    r"modifie[rz]\s+mes\s+(?:donnees|coordonnees|informations)",
                ),
            ),
            *make_rules(
                "de",
                ("berichtigen", r"berichtig\w*|korrigier\w*"),
                (
                    "meine daten andern",
                    r"meine\s+(?:daten|angaben)\s+(?:zu\s+)?(?:andern|aendern|aktualisieren)",
                ),
            ),
        ),
    ),
)


# Words that, before an unsubscribe keyword in the same sentence or right after it, turn
# it around ("I do NOT want to unsubscribe", "not looking to unsubscribe", "please don't
# remove me", "ik wil me niet afmelden", "je ne veux pas me desinscrire", "ich will mich
# nicht abmelden", "unsubscribe? not me"). Such messages go to a human.
NEGATIONS = frozenset(
    {"not", "don't", "dont", "never", "didn't", "didnt", "won't", "wont", "cannot", "can't",
     "cant", "doesn't", "doesnt", "wouldn't", "wouldnt", "shouldn't", "isn't", "wasn't",
     "neither", "nor", "no,", "nope"}  # en
    | {"niet", "nooit", "niets"}  # nl
    | {"pas", "jamais", "point"}  # fr
    | {"nicht", "nie", "niemals", "nichts"}  # de
)
_WORDS_AFTER = 3  # "unsubscribe is not what I want", "unsubscribe? no, not me"
# A person who wants to stay, or to come back, is never unsubscribed by a machine.
KEEP_SUBSCRIPTION = re.compile(
    r"keep\s+(?:me|us|my\s+\S+)\s+(?:subscribed|on\s+(?:the|your)|in\s+the)"
    r"|(?:stay|remain)\s+(?:subscribed|on\s+(?:the|your))|still\s+(?:want|wish|like)\s+to"
    r"|continue\s+(?:to\s+receive|receiving|getting)|by\s+(?:mistake|accident)"
    r"|accidentally|re-?subscribe|subscribe\s+(?:me\s+)?again|sign\s+(?:me\s+)?(?:back\s+)?up\s+again"
    r"|ingeschreven\s+blijven|blijven\s+ontvangen|per\s+(?:ongeluk|vergissing)"
    r"|opnieuw\s+(?:aanmelden|inschrijven)|weer\s+(?:aanmelden|inschrijven)"
    r"|rester\s+(?:inscrit|abonne)|continuer\s+a\s+recevoir|par\s+erreur|me\s+reinscrire"
    r"|me\s+reabonner|weiterhin\s+(?:erhalten|bekommen|abonniert|empfangen)"
    r"|(?:angemeldet|abonniert)\s+bleiben|versehentlich|wieder\s+(?:anmelden|abonnieren)"
)

# Words for guessing the language of a text that matched no keyword.
_STOPWORD_TEXT: dict[Language, str] = {
    "nl": "de het een en ik niet van mijn mij graag aub alstublieft bedankt groet groeten "
    "vriendelijke met voor dat op wil uw jullie geen meer ook",
    "fr": "le la les et je vous ne pas mes merci svp bonjour cordialement pour est une des du "
    "moi votre plus au",
    "en": "the and you i my me please thanks thank not to of is for your regards this from "
    "with any",
    "de": "der die das und ich sie nicht bitte mit meine mich danke grusse von ist ein eine fur "
    "ihre keine mehr",
}
STOPWORDS: dict[Language, frozenset[str]] = {
    language: frozenset(words.split()) for language, words in _STOPWORD_TEXT.items()
}



def guess_language(folded: str, keyword_languages: list[Language]) -> Language | None:
    scores: dict[Language, int] = dict.fromkeys(STOPWORDS, 0)
    for language in keyword_languages:
        scores[language] += 3
    for word in WORD_CHARS.findall(folded[:20_000]):
        for language, words in STOPWORDS.items():
            if word in words:
                scores[language] += 1
    ranked = sorted(scores.items(), key=lambda item: item[1], reverse=True)
    best, best_score = ranked[0]
    if best_score < 2 or best_score == ranked[1][1]:
        return None
    return best



def matching_rules(rules: Iterable[Rule], folded: str) -> list[Rule]:
    return [rule for rule in rules if rule.pattern.search(folded)]


_SENTENCE_END = re.compile(r"[.!?;\n]")


def _negated(folded: str, start: int, end: int) -> bool:
    """A negation before ``start`` in the same sentence, or in the few words after ``end``."""
    sentence = _SENTENCE_END.split(folded[max(0, start - 300) : start])[-1]
    after = " ".join(re.split(r"[\n,.;:!?]", folded[end : end + 80])[0].split()[:_WORDS_AFTER])
    words = [w.strip(",:()\"'") for w in (sentence + " " + after).split()]
    return any(word in NEGATIONS or word + "," in NEGATIONS for word in words)


def keeps_subscription(folded: str) -> bool:
    return bool(KEEP_SUBSCRIPTION.search(folded))


def plain_hits(rules: Iterable[Rule], folded: str) -> tuple[list[Rule], list[Rule]]:
    """(hits, negated hits): "I do not want to unsubscribe" is not a request; a rule that
    is negated anywhere in the text is a negated hit (a human reads it)."""
    hits: list[Rule] = []
    negated: list[Rule] = []
    for rule in rules:
        matches = list(rule.pattern.finditer(folded))
        if not matches:
            continue
        if any(_negated(folded, m.start(), m.end()) for m in matches):
            negated.append(rule)
        else:
            hits.append(rule)
    return hits, negated
