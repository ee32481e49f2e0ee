"""The citizens' pages: report a defect, the map of reports, one report, area alerts."""
