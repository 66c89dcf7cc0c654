"""Copy as command: the command line equivalent to each action (pure functions)."""

from __future__ import annotations

import datetime as dt
import shlex

from dicomdesk.ui import commands, query_keys


def test_echo_command_names_host_port_and_both_ae_titles():
    assert commands.echo_command("pacs.local", 104, "DICOMDESK", "PACS") == \
        "dicomdesk echo pacs.local 104 --aet DICOMDESK --aec PACS"


def test_send_command_quotes_paths_with_spaces():
    text = commands.send_command("h", 11112, ["/data/my scans", "/x/a.dcm"], "ME", "YOU")
    assert shlex.split(text) == ["dicomdesk", "send", "h", "11112", "/data/my scans",
                                 "/x/a.dcm", "--aet", "ME", "--aec", "YOU"]


def test_find_command_has_level_model_and_keys_with_wildcards_quoted():
    text = commands.find_command("h", 104, "study", {"PatientName": "DOE*", "StudyDate": ""},
                                 "ME", "PACS", model="study")
    assert text == ("dicomdesk find h 104 --aet ME --aec PACS --level STUDY --model study "
                    "-k 'PatientName=DOE*' -k StudyDate=")
    assert shlex.split(text)[-3] == "PatientName=DOE*"


def test_move_command_names_the_destination():
    text = commands.move_command("h", 104, "DICOMDESK", "SERIES",
                                 {"StudyInstanceUID": "1.2", "SeriesInstanceUID": "1.2.3"},
                                 "DICOMDESK", "PACS")
    assert shlex.split(text) == ["dicomdesk", "move", "h", "104", "--aet", "DICOMDESK", "--aec",
                                 "PACS", "--dest", "DICOMDESK", "--level", "SERIES",
                                 "-k", "StudyInstanceUID=1.2", "-k", "SeriesInstanceUID=1.2.3"]


def test_get_command_ends_with_output_folder():
    text = commands.get_command("h", 104, "STUDY", {"StudyInstanceUID": "1.2"}, "/tmp/out",
                                "ME", "PACS", model="patient")
    assert shlex.split(text)[-2:] == ["--out", "/tmp/out"]
    assert "--model patient" in text


def test_serve_command():
    assert commands.serve_command(11112, "DICOMDESK", "/srv/dicom") == \
        "dicomdesk serve --port 11112 --aet DICOMDESK --storage /srv/dicom"


def test_date_presets_give_dicom_date_ranges():
    today = dt.date(2024, 3, 10)
    assert query_keys.date_range("Any", today) == ""
    assert query_keys.date_range("Today", today) == "20240310"
    assert query_keys.date_range("Yesterday", today) == "20240309"
    assert query_keys.date_range("Last 7 days", today) == "20240304-20240310"
    assert query_keys.date_range("Range", today, dt.date(2024, 1, 2), dt.date(2024, 1, 1)) == \
        "20240101-20240102"
    assert query_keys.date_range("Range", today, dt.date(2024, 1, 2), None) == "20240102-"


def test_study_keys_include_return_keys_and_always_ask_modalities_in_study():
    keys = query_keys.study_keys(query_keys.SearchForm(patient_name="DOE*"), dt.date(2024, 1, 1))
    assert keys["PatientName"] == "DOE*"
    assert keys["StudyInstanceUID"] == ""
    assert keys["ModalitiesInStudy"] == ""  # a return key: the study rows show it
    keys = query_keys.study_keys(query_keys.SearchForm(modality="ct"), dt.date(2024, 1, 1))
    assert keys["ModalitiesInStudy"] == "CT"


def test_query_panel_copies_its_search_as_a_find_command(window, qtbot):
    from dicomdesk import config

    window.book.replace_all([config.Node("pacs", "PACS", "10.1.1.1", 104)])
    panel = window.query_panel
    panel.patient_name_edit.setText("DOE*")
    text = panel.copy_find_command()
    assert text.startswith("dicomdesk find 10.1.1.1 104 --aet DICOMDESK --aec PACS "
                           "--level STUDY --model study")
    assert "'PatientName=DOE*'" in text
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == text
