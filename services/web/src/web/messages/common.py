"""Words every page shares: the layout, the language switch, the error pages."""

MESSAGES = {
    "site.name": ("Mängelmelder {city}", "Mängelmelder {city}"),
    "site.skip": ("Zum Inhalt springen", "Skip to main content"),
    "site.nav": ("Hauptnavigation", "Main navigation"),
    "site.switch_to": ("English", "Deutsch"),
    "site.switch_label": ("Switch to English", "Auf Deutsch wechseln"),
    "site.footer": (
        "Ein Angebot für {city}. Kartendaten: {city_name}, offene Daten.",
        "A service for {city}. Map data: {city_name}, open data.",
    ),
    "site.privacy": ("Datenschutz", "Privacy"),
    "error.title.400": ("Die Anfrage war ungültig", "The request was not valid"),
    "error.text.400": (
        "Bitte prüfen Sie die Adresse oder gehen Sie zurück und versuchen Sie es erneut.",
        "Please check the address, or go back and try again.",
    ),
    "error.title.403": ("Das Formular ist abgelaufen", "The form has expired"),
    "error.text.403": (
        "Aus Sicherheitsgründen konnten wir das Formular nicht annehmen. Bitte laden Sie die "
        "Seite neu und senden Sie es noch einmal.",
        "For your security we could not accept the form. Please reload the page and send it again.",
    ),
    "error.title.404": ("Seite nicht gefunden", "Page not found"),
    "error.text.404": (
        "Prüfen Sie die Adresse. Eine Meldung, die es nicht gibt, finden wir nicht.",
        "Please check the address. We cannot find a report that does not exist.",
    ),
    "error.cities": ("Mängelmelder gibt es hier für:", "Mängelmelder is here for:"),
    "site.other_cities": ("Mängelmelder gibt es auch für", "Mängelmelder is also here for"),
    "site.map_credit": ("© {city_name}", "© {city_name}"),
    "error.title.405": ("Das geht hier nicht", "That does not work here"),
    "error.text.405": (
        "Bitte nutzen Sie die Links und Formulare der Seite.",
        "Please use the page's links and forms.",
    ),
    "error.title.413": ("Das war zu viel auf einmal", "That was too much at once"),
    "error.text.413": (
        "Die gesendeten Daten sind zu groß. Fotos dürfen höchstens 10 MB groß sein, höchstens "
        "fünf auf einmal.",
        "What you sent is too large. Photos may have at most 10 MB each, five at most.",
    ),
    "error.title.503": ("Der Dienst ist gerade nicht erreichbar", "The service is unavailable"),
    "error.text.503": (
        "Bitte versuchen Sie es in ein paar Sekunden noch einmal. Ihre Eingaben sind nicht "
        "verloren, wenn Sie im Browser zurückgehen.",
        "Please try again in a few seconds. Going back in your browser keeps what you entered.",
    ),
    "error.home": ("Zur Startseite", "Go to the start page"),
}
