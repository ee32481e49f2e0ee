"""The console's view logic without a browser: the queue's filter and its links, the charts'
geometry, how durations and shares read."""

from web.staff import views


def test_the_queue_filter_reads_only_what_it_knows_and_links_back() -> None:
    chosen = views.QueueFilter.from_query(
        {
            "status": "assigned",
            "service_code": "999",
            "sort": "description",
            "age": "5",
            "overdue": "1",
            "q": "  Loch  ",
            "page": "x",
        }
    )
    assert chosen == views.QueueFilter(status="assigned", overdue=True, q="Loch")
    assert chosen.api_params() == {
        "sort": "-requested_at",
        "status": "assigned",
        "overdue": "true",
        "q": "Loch",
    }
    assert chosen.query() == "status=assigned&overdue=1&q=Loch"
    later = views.QueueFilter.from_query({"q": "Loch", "page": "3"})
    assert later.query() == "q=Loch&page=3"
    assert later.query(status="resolved") == "status=resolved&q=Loch"  # a new filter: page 1
    assert later.query(page=4) == "q=Loch&page=4"
    assert views.QueueFilter.from_query({"page": "99999999"}).page == 10_000


def test_bar_lengths_follow_the_values() -> None:
    chart = views.horizontal_chart([("a", 10), ("b", 5), ("c", 0)])
    a, b, c = chart.bars
    assert a.width == 2 * b.width
    assert c.width == 0
    assert a.y < b.y < c.y
    assert chart.height > c.y + c.height
    months = views.vertical_chart([("2026-10", 4), ("2026-11", 8)])
    october, november = months.bars
    assert november.height == 2 * october.height
    assert october.y + october.height == november.y + november.height  # one baseline
    assert views.horizontal_chart([]).bars == []


def test_the_phones_charts_put_each_bar_under_its_label_across_the_width() -> None:
    chart = views.stacked_chart([("Straßenschaden / Schlagloch", 10), ("2026-11", 5), ("c", 0)])
    a, b, c = chart.bars
    assert chart.stacked
    assert chart.width == views.NARROW_WIDTH
    assert a.x == b.x == 0
    assert a.width == 2 * b.width
    assert a.x + a.width + 40 < chart.width  # room for the value beside the longest bar
    assert c.width == 0
    # Each label stands above its bar, below the bar before.
    assert a.y + a.height < b.y - 14
    assert b.y + b.height < c.y - 14
    assert chart.height > c.y + c.height
    assert views.stacked_chart([]).bars == []


def test_the_vertical_charts_ticks_stand_where_their_values_are() -> None:
    chart = views.vertical_chart([("2026-11", 5), ("2026-12", 3)])
    five = chart.bars[0]
    baseline = five.y + five.height
    assert [value for _, value in chart.ticks] == [0, 2, 5]
    for y, value in chart.ticks:
        assert y == baseline - five.height * value / 5
    assert [value for _, value in views.vertical_chart([("2026-12", 1)]).ticks] == [0, 1]


def test_durations_and_shares_read_as_offices_write_them() -> None:
    assert views.hours(None, "de") == "–"
    assert views.hours(0.25, "de") == "15 Min."
    assert views.hours(5.5, "de") == "5,5 Std."
    assert views.hours(72, "de") == "3,0 Tage"
    assert views.hours(72, "en") == "3.0 days"
    assert views.percent(0.5, "de") == "50,0 %"
    assert views.percent(None, "en") == "–"
    assert views.status_label("duplicate", "de") == "Duplikat"
    assert views.status_label("in_progress", "de") == "in Bearbeitung"
    assert (
        views.area_names(
            [{"level": "stadtbezirk", "name": "Mitte"}, {"level": "ortsteil", "name": "Zentrum"}]
        )
        == "Zentrum (Mitte)"
    )
    assert views.photo_path("http://i/api/v1/photos/abc123/display", "original") == (
        "/staff/photos/abc123/original"
    )


def test_the_history_names_who_changed_a_ticket_in_words() -> None:
    assert views.actor("staff:Anna Amt", "de") == "Anna Amt"
    assert views.actor("citizen", "de") == views.actor("reporter", "de") == "meldende Person"
    assert views.actor("geo-router", "de") == "automatische Zuordnung"
    assert views.actor("geo-router", "en") == "automatic routing"
    assert views.actor("something-new", "de") == "something-new"
