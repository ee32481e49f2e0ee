"""The citizens' pages' words."""

MESSAGES = {
    "nav.report": ("Mangel melden", "Report a defect"),
    "nav.map": ("Karte der Meldungen", "Map of reports"),
    "nav.alerts": ("Benachrichtigungen", "Alerts"),
    "form.title": ("Einen Mangel melden", "Report a defect"),
}
