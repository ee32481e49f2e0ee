"""The citizens' pages' words: key → (German, English)."""

MESSAGES = {
    "nav.report": ("Mangel melden", "Report a defect"),
    "nav.map": ("Meldungen ansehen", "View reports"),
    "nav.alerts": ("Benachrichtigungen", "Alerts"),
    # The report form
    "form.title": ("Einen Mangel melden", "Report a defect"),
    "form.lead": (
        "Schlagloch, defekte Laterne, wilder Müll? Sagen Sie uns, was und wo – wir leiten es an "
        "das zuständige Amt weiter.",
        "A pothole, a broken street light, dumped rubbish? Tell us what and where – we pass it "
        "on to the office responsible.",
    ),
    "form.errors_title": ("Bitte prüfen Sie Ihre Angaben", "Please check what you entered"),
    "form.errors_title_prefix": ("Fehler:", "Error:"),
    "form.error_prefix": ("Fehler:", "Error:"),
    "form.category": ("Art des Mangels", "Kind of defect"),
    "form.category_choose": ("Bitte wählen", "Please choose"),
    "form.attributes_for": ("Nur bei „{category}“", "Only for “{category}”"),
    "form.optional": ("(freiwillig)", "(optional)"),
    "form.place": ("Wo ist der Mangel?", "Where is the defect?"),
    "form.place_hint_nojs": (
        "Geben Sie Breiten- und Längengrad ein, zum Beispiel aus der Karten-App Ihres Telefons.",
        "Enter the latitude and longitude, for example from your phone's map app.",
    ),
    "form.place_hint_nojs_geocoder": (
        "Geben Sie die Adresse ein, oder Breiten- und Längengrad aus einer Karten-App.",
        "Enter the address, or the latitude and longitude from a map app.",
    ),
    "form.place_hint_js": (
        "Tippen Sie auf die Karte, nutzen Sie Ihren Standort oder geben Sie Koordinaten ein.",
        "Tap the map, use your location, or enter coordinates.",
    ),
    "form.map_label": (
        "Karte: Tippen oder klicken setzt die Markierung. Pfeiltasten verschieben die Karte.",
        "Map: tap or click to place the pin. Arrow keys move the map.",
    ),
    "form.use_location": ("Meinen Standort verwenden", "Use my location"),
    "form.pin_centre": ("Markierung in die Kartenmitte", "Pin the map's centre"),
    "form.lat": ("Breitengrad", "Latitude"),
    "form.lat_hint": ("zum Beispiel {lat}", "for example {lat}"),
    "form.long": ("Längengrad", "Longitude"),
    "form.long_hint": ("zum Beispiel {long}", "for example {long}"),
    "form.address": ("Ortsbeschreibung", "Description of the place"),
    "form.address_geocoder": ("Adresse", "Address"),
    "form.address_hint": (
        "Straße und Hausnummer oder ein Orientierungspunkt, damit das Amt den Ort findet.",
        "Street and number or a landmark, so the office finds the place.",
    ),
    "form.address_hint_geocoder": (
        "Ohne Karte oder Koordinaten genügt die Adresse, zum Beispiel „Markt 1“.",
        "Without the map or coordinates the address is enough, for example “Markt 1”.",
    ),
    "form.place_inside": ("Ort gesetzt: innerhalb von {city}.", "Place set: inside {city}."),
    "form.place_pinned": ("Markierung gesetzt.", "Pin placed."),
    "form.locating": ("Standort wird ermittelt …", "Finding your location …"),
    "form.location_failed": (
        "Ihr Standort ist nicht verfügbar. Bitte tippen Sie auf die Karte.",
        "Your location is not available. Please tap the map.",
    ),
    "form.description": ("Beschreibung", "Description"),
    "form.description_hint": (
        "Was ist kaputt oder gefährlich? Höchstens 4.000 Zeichen.",
        "What is broken or dangerous? At most 4,000 characters.",
    ),
    "form.photos": ("Fotos", "Photos"),
    "form.photos_hint": (
        "Bis zu {count} Fotos, je höchstens {mb} MB. Große Fotos werden vor dem Senden "
        "verkleinert.",
        "Up to {count} photos, {mb} MB each at most. Large photos are scaled down before sending.",
    ),
    "form.photo_scaling": ("Fotos werden verkleinert …", "Scaling photos …"),
    "form.photo_ready": ("{count} Foto(s) bereit.", "{count} photo(s) ready."),
    "form.contact": ("Über den Fortgang informiert werden", "Hear how it goes"),
    "form.contact_hint": (
        "Mit Ihrer E-Mail-Adresse schreiben wir Ihnen, wenn sich etwas tut.",
        "With your e-mail address we write to you when something happens.",
    ),
    "form.email": ("E-Mail-Adresse", "E-mail address"),
    "form.name": ("Vorname", "First name"),
    "form.privacy": (
        "Datenschutz: Ihre E-Mail-Adresse und Ihr Name sind nicht öffentlich und werden nur "
        "genutzt, um Sie über diese Meldung zu informieren. Sie werden 90 Tage nach Abschluss "
        "gelöscht, auf Wunsch sofort. Beschreibung, Fotos und Ort sind öffentlich – bitte keine "
        "Gesichter oder Kennzeichen fotografieren.",
        "Privacy: your e-mail address and name are not public and are used only to tell you "
        "about this report. They are deleted 90 days after it is closed, or at once on request. "
        "The description, photos and place are public – please do not photograph faces or "
        "number plates.",
    ),
    "form.honeypot": ("Dieses Feld bitte leer lassen", "Please leave this field empty"),
    "form.send": ("Meldung senden", "Send report"),
    "form.error.category": ("Wählen Sie die Art des Mangels", "Choose the kind of defect"),
    "form.error.place": (
        "Geben Sie den Ort an: Breiten- und Längengrad eintragen (oder, wo eine Karte angezeigt "
        "wird, die Stecknadel setzen)",
        "Say where it is: enter latitude and longitude (or, where a map is shown, place the pin)",
    ),
    "form.error.outside": (
        "Dieser Ort liegt außerhalb von {city}. Wir können nur Mängel im Stadtgebiet annehmen.",
        "This place is outside {city}. We can only take reports within the city.",
    ),
    "form.error.address_unknown": (
        "Diese Adresse haben wir nicht gefunden. Setzen Sie den Ort auf der Karte",
        "We could not find this address. Place the pin on the map",
    ),
    "form.error.description_long": (
        "Die Beschreibung darf höchstens 4.000 Zeichen lang sein",
        "The description may have at most 4,000 characters",
    ),
    "form.error.description": ("Prüfen Sie die Beschreibung", "Check the description"),
    "form.error.address": ("Prüfen Sie die Ortsbeschreibung", "Check the description of the place"),
    "form.error.address_long": (
        "Die Ortsbeschreibung darf höchstens 500 Zeichen lang sein",
        "The description of the place may have at most 500 characters",
    ),
    "form.error.service_code": ("Wählen Sie die Art des Mangels", "Choose the kind of defect"),
    "form.error.email": (
        "Geben Sie eine E-Mail-Adresse wie name@beispiel.de ein",
        "Enter an e-mail address like name@example.org",
    ),
    "form.error.name_long": (
        "Der Name darf höchstens 200 Zeichen lang sein",
        "The name may have at most 200 characters",
    ),
    "form.error.attribute": (
        "Beantworten Sie die Fragen zu dieser Art von Mangel",
        "Answer the questions about this kind of defect",
    ),
    "form.error.photos_many": ("Wählen Sie höchstens 5 Fotos", "Choose at most 5 photos"),
    "form.error.photo_large": (
        "Jedes Foto darf höchstens 10 MB groß sein",
        "Each photo may have at most 10 MB",
    ),
    "form.error.photo_type": (
        "Fotos müssen JPEG, PNG, WebP oder HEIC sein",
        "Photos must be JPEG, PNG, WebP or HEIC",
    ),
    "form.error.photo_refused": (
        "Ein Foto ließ sich nicht lesen. Wählen Sie ein anderes oder senden Sie ohne Foto",
        "A photo could not be read. Choose another, or send without it",
    ),
    "form.error.refused": (
        "Die Meldung wurde nicht angenommen. Bitte prüfen Sie Ihre Angaben",
        "The report was not accepted. Please check what you entered",
    ),
    "form.error.honeypot": (
        "Lassen Sie das Feld „Dieses Feld bitte leer lassen“ leer",
        "Leave the field “Please leave this field empty” empty",
    ),
    # Duplicates
    "duplicates.title": ("Schon gemeldet?", "Already reported?"),
    "duplicates.lead": (
        "In der Nähe gibt es offene Meldungen dieser Art. Ist Ihre dabei?",
        "There are open reports of this kind close by. Is yours one of them?",
    ),
    "duplicates.mine_too": ("Das ist auch meins", "This is mine too"),
    "duplicates.different": ("Meins ist ein anderer Mangel", "Mine is a different one"),
    "duplicates.dismissed": (
        "Gut, Ihre Meldung wird als neuer Mangel gesendet.",
        "Fine, your report will be sent as a new defect.",
    ),
    "duplicates.distance": ("{metres} m entfernt", "{metres} m away"),
    "duplicates.view": ("Ansehen", "View"),
    "duplicates.page_title": ("Wurde das schon gemeldet?", "Has this been reported already?"),
    "duplicates.page_lead": (
        "Ganz in der Nähe gibt es offene Meldungen derselben Art. Wenn eine davon Ihren Mangel "
        "beschreibt, folgen Sie ihr: Sie werden dann über jeden Fortschritt informiert.",
        "Very close by there are open reports of the same kind. If one of them describes your "
        "defect, follow it: you will hear about every step.",
    ),
    "duplicates.different_title": ("Meins ist ein anderer Mangel", "Mine is a different one"),
    "duplicates.photos_again": (
        "Fotos erneut auswählen ({count} waren angehängt)",
        "Choose your photos again ({count} were attached)",
    ),
    "duplicates.photos_again_hint": (
        "Aus Sicherheitsgründen kann der Browser ausgewählte Fotos nicht erneut senden.",
        "For security, browsers cannot send chosen photos a second time.",
    ),
    "duplicates.send_anyway": ("Als neuen Mangel senden", "Send as a new defect"),
    # Sent
    "sent.title": ("Meldung gesendet", "Report sent"),
    "sent.reference": ("Ihre Meldungsnummer", "Your report number"),
    "sent.category": (
        "Vielen Dank für Ihre Meldung „{category}“.",
        "Thank you for your report “{category}”.",
    ),
    "sent.follow_title": ("Den Stand verfolgen", "Follow its progress"),
    "sent.follow_text": (
        "Unter dieser Adresse sehen Sie jederzeit, wer zuständig ist und was passiert:",
        "At this address you can see at any time who is responsible and what is happening:",
    ),
    "sent.own_title": ("Ihr persönlicher Link", "Your personal link"),
    "sent.own_text": (
        "Mit diesem Link können nur Sie melden, dass der Mangel nicht behoben ist, oder Ihre "
        "Kontaktdaten löschen. Geben Sie ihn nicht weiter.",
        "With this link only you can say the defect is not fixed, or delete your contact data. "
        "Do not share it.",
    ),
    "sent.own_link": ("Meine Meldung öffnen", "Open my report"),
    "sent.next_title": ("Wie geht es weiter?", "What happens next?"),
    "sent.next_text": (
        "Wir leiten die Meldung an das zuständige Amt weiter. Wenn Sie eine E-Mail-Adresse "
        "angegeben haben, schreiben wir Ihnen bei jeder Änderung.",
        "We pass the report on to the office responsible. If you gave an e-mail address, we "
        "write to you at every change.",
    ),
    "sent.another": ("Weiteren Mangel melden", "Report another defect"),
    # One report
    "report.reported": ("Gemeldet am", "Reported"),
    "report.office": ("Zuständig", "Responsible"),
    "report.office_pending": ("wird ermittelt", "being determined"),
    "report.address": ("Ort", "Place"),
    "report.reference": ("Meldungsnummer", "Report number"),
    "report.description": ("Beschreibung", "Description"),
    "report.photos": ("Fotos", "Photos"),
    "report.photo_alt": (
        "Foto {n} zu „{category}“ (groß öffnen)",
        "Photo {n} of “{category}” (open full size)",
    ),
    "report.place": ("Ort", "Place"),
    "report.map_label": (
        "Karte mit dem Ort der Meldung „{category}“",
        "Map showing where “{category}” was reported",
    ),
    "report.coordinates": ("Koordinaten: {lat}, {long}", "Coordinates: {lat}, {long}"),
    "report.history": ("Verlauf", "History"),
    "report.yours": ("Ihre Meldung", "Your report"),
    "report.not_fixed_title": ("Nicht behoben?", "Not fixed?"),
    "report.not_fixed_text": (
        "Wenn der Mangel noch besteht, sagen Sie es uns bis {until}. Die Meldung wird wieder "
        "geöffnet und das Amt informiert.",
        "If the defect is still there, tell us by {until}. The report is reopened and the "
        "office is told.",
    ),
    "report.not_fixed_note": ("Was ist noch nicht in Ordnung?", "What is still wrong?"),
    "report.not_fixed_photo": ("Ein aktuelles Foto", "A current photo"),
    "report.not_fixed_send": ("Als nicht behoben melden", "Report as not fixed"),
    "report.not_fixed_over": (
        "Die Frist, um „nicht behoben“ zu melden, ist abgelaufen. Bitte melden Sie den Mangel neu.",
        "The time to report “not fixed” is over. Please report the defect again.",
    ),
    "report.erase_title": ("Meine Kontaktdaten löschen", "Delete my contact data"),
    "report.erase_text": (
        "Wir löschen Ihre E-Mail-Adresse und Ihren Namen sofort. Die Meldung bleibt ohne Ihre "
        "Daten bestehen; Sie erhalten dann keine Nachrichten mehr.",
        "We delete your e-mail address and name at once. The report stays, without your data; "
        "you will get no more messages.",
    ),
    "report.erase_send": ("Kontaktdaten löschen", "Delete contact data"),
    "erase.title": ("Kontaktdaten wirklich löschen?", "Delete your contact data?"),
    "erase.lead": (
        "Zu Ihrer Meldung „{category}“ (Aktenzeichen {reference}) löschen wir:",
        "For your report “{category}” (reference {reference}) we delete:",
    ),
    "erase.email": ("Ihre E-Mail-Adresse", "your e-mail address"),
    "erase.name": ("Ihren Namen, falls Sie ihn angegeben haben", "your name, if you gave it"),
    "erase.after": (
        "Sie erhalten danach keine Nachrichten mehr zu dieser Meldung, auch nicht, wenn der "
        "Mangel behoben ist. Die Meldung selbst bleibt bestehen, ohne Ihre Daten.",
        "After that you will get no more messages about this report, not even when the defect "
        "is fixed. The report itself stays, without your data.",
    ),
    "erase.warning": (
        "Das Löschen kann nicht rückgängig gemacht werden.",
        "This cannot be undone.",
    ),
    "erase.confirm": ("Ja, löschen", "Yes, delete"),
    "erase.cancel": ("Abbrechen", "Cancel"),
    "report.all": ("Alle Meldungen ansehen", "View all reports"),
    "report.follow_title": ("Auf dem Laufenden bleiben", "Stay informed"),
    "report.follow_text": (
        "Betrifft Sie dieser Mangel auch? Folgen Sie der Meldung: wir schreiben Ihnen, wenn "
        "sich etwas tut.",
        "Does this defect affect you too? Follow the report: we write to you when something "
        "happens.",
    ),
    "report.error.note": (
        "Beschreiben Sie, was noch nicht behoben ist",
        "Describe what is not fixed",
    ),
    "report.done.reopened": (
        "Danke. Die Meldung ist wieder offen, und das Amt ist informiert.",
        "Thank you. The report is open again, and the office has been told.",
    ),
    "report.done.erased": (
        "Ihre Kontaktdaten sind gelöscht. Sie erhalten keine Nachrichten mehr zu dieser Meldung.",
        "Your contact data has been deleted. You will get no more messages about this report.",
    ),
    "report.done.nothing_to_erase": (
        "Zu dieser Meldung sind keine Kontaktdaten (mehr) gespeichert.",
        "No contact data is stored (any more) for this report.",
    ),
    "report.done.invalid_token": (
        "Dieser Link berechtigt nicht dazu. Nutzen Sie den Link aus Ihrer E-Mail.",
        "This link does not allow that. Please use the link from your e-mail.",
    ),
    "report.done.not_resolved": (
        "Die Meldung ist nicht als erledigt markiert und kann daher nicht wieder geöffnet werden.",
        "The report is not marked as resolved, so it cannot be reopened.",
    ),
    "report.done.reopen_period_over": (
        "Die Frist ist abgelaufen. Bitte melden Sie den Mangel neu.",
        "The time for this is over. Please report the defect again.",
    ),
    "report.done.failed": (
        "Das hat nicht geklappt. Bitte versuchen Sie es später noch einmal.",
        "That did not work. Please try again later.",
    ),
    # Follow ("this is mine too")
    "follow.title": ("Einer Meldung folgen", "Follow a report"),
    "follow.lead": (
        "Geben Sie Ihre E-Mail-Adresse an, und wir informieren Sie über jeden Schritt der "
        "Meldung „{category}“.",
        "Give your e-mail address and we tell you about every step of the report “{category}”.",
    ),
    "follow.send": ("Meldung folgen", "Follow the report"),
    "follow.error.email": (
        "Geben Sie eine E-Mail-Adresse wie name@beispiel.de ein",
        "Enter an e-mail address like name@example.org",
    ),
    "followed.title": ("Sie folgen der Meldung", "You are following the report"),
    "followed.text": (
        "Danke! Statt einer neuen Meldung zählt Ihre Stimme bei „{category}“. Wir schreiben "
        "Ihnen bei jeder Änderung.",
        "Thank you! Instead of a new report, your voice counts for “{category}”. We write to "
        "you at every change.",
    ),
    "followed.view": ("Die Meldung ansehen", "View the report"),
    # Rate limit
    "limit.title": ("Bitte einen Moment Geduld", "Please wait a moment"),
    "limit.text": (
        "Von Ihrem Anschluss oder Ihrer E-Mail-Adresse kamen gerade sehr viele Meldungen. Bitte "
        "versuchen Sie es in {minutes} Minute(n) noch einmal.",
        "We have just had a great many reports from your connection or e-mail address. Please "
        "try again in {minutes} minute(s).",
    ),
    "limit.urgent": (
        "Bei Gefahr für Leib und Leben rufen Sie bitte 110 oder 112.",
        "If life or limb is in danger, please call 110 or 112.",
    ),
    # Map of reports
    "reports.title": ("Meldungen in {city}", "Reports in {city}"),
    "reports.all_categories": ("Alle Arten", "All kinds"),
    "reports.status": ("Stand", "Status"),
    "reports.status.open": ("offen", "open"),
    "reports.status.recent": ("offen und kürzlich erledigt", "open and recently closed"),
    "reports.status.closed": ("abgeschlossen", "closed"),
    "reports.status.all": ("alle", "all"),
    "reports.filter": ("Anzeigen", "Show"),
    "reports.map_label": ("Karte der Meldungen", "Map of reports"),
    "reports.map_hint": (
        "Die Karte zeigt dieselben Meldungen wie die Liste darunter.",
        "The map shows the same reports as the list below.",
    ),
    "reports.to_list": ("Zur Liste", "Go to the list"),
    "reports.list_title": ("Liste der Meldungen ({total})", "List of reports ({total})"),
    "reports.none": ("Keine Meldungen für diese Auswahl.", "No reports match this choice."),
    "reports.pages": ("Seiten", "Pages"),
    "reports.previous": ("Vorherige Seite", "Previous page"),
    "reports.next": ("Nächste Seite", "Next page"),
    "reports.page_of": ("Seite {page} von {total}", "Page {page} of {total}"),
    # Alerts and feeds
    "alerts.title": ("Über neue Meldungen informiert werden", "Hear about new reports"),
    "alerts.lead": (
        "Wir schreiben Ihnen, wenn in Ihrem Teil von {city} oder rund um einen Ort etwas Neues "
        "gemeldet wird.",
        "We write to you when something new is reported in your part of {city}, or around a place.",
    ),
    "alerts.where": ("Wo?", "Where?"),
    "alerts.kind_area": ("In einem Gebiet von {city}", "In an area of {city}"),
    "alerts.area": ("Gebiet", "Area"),
    "alerts.area_choose": ("Bitte wählen", "Please choose"),
    "alerts.level.stadtbezirk": ("Stadtbezirke", "Stadtbezirke (districts)"),
    "alerts.level.ortsteil": ("Ortsteile", "Ortsteile (neighbourhoods)"),
    "alerts.level.stadtteil": ("Stadtteile", "Stadtteile (districts)"),
    "alerts.level.gemeinde": ("Gemeinden", "Gemeinden (municipalities)"),
    "alerts.kind_point": ("Im Umkreis eines Ortes", "Within a radius of a place"),
    "alerts.radius": ("Umkreis", "Radius"),
    "alerts.category": ("Nur diese Art von Mangel", "Only this kind of defect"),
    "alerts.privacy": (
        "Datenschutz: Wir nutzen Ihre E-Mail-Adresse nur für diese Benachrichtigungen. Sie "
        "bestätigen das Abonnement per E-Mail und können es mit einem Klick in jeder Nachricht "
        "beenden.",
        "Privacy: we use your e-mail address only for these alerts. You confirm the "
        "subscription by e-mail and can end it with one click in every message.",
    ),
    "alerts.subscribe": ("Benachrichtigungen bestellen", "Subscribe to alerts"),
    "alerts.error.area": ("Wählen Sie ein Gebiet", "Choose an area"),
    "alerts.error.radius": ("Wählen Sie einen Umkreis", "Choose a radius"),
    "alerts.sent_title": ("Bitte bestätigen Sie per E-Mail", "Please confirm by e-mail"),
    "alerts.sent_text": (
        "Wir haben eine E-Mail an {email} geschickt. Erst wenn Sie den Link darin öffnen und "
        "bestätigen, erhalten Sie Benachrichtigungen.",
        "We have sent an e-mail to {email}. Only once you open its link and confirm will you get "
        "alerts.",
    ),
    "alerts.another": ("Weitere Benachrichtigung bestellen", "Subscribe to another alert"),
    "alerts.feeds_title": ("Als Feed abonnieren", "Subscribe as a feed"),
    "alerts.feeds_text": (
        "Neue Meldungen gibt es auch als Atom-Feed für Ihren Feedreader.",
        "New reports are also available as Atom feeds for your feed reader.",
    ),
    "alerts.feeds_areas": ("Feeds nach Gebiet", "Feeds by area"),
    "alerts.feeds_categories": ("Feeds nach Art des Mangels", "Feeds by kind of defect"),
    "feed.title": ("Mängelmelder {city}: {name}", "Mängelmelder {city}: {name}"),
}
