"""MIMIC report sectioning (official MIT-LCP rules, re-implemented)."""
from __future__ import annotations

from verl_ext.data.sections import extract_report_fields, normalize_section_name, split_sections

REPORT = (
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n"
    " \n"
    " INDICATION:  ___ year old woman with cough // eval pna\n"
    " \n"
    " TECHNIQUE:  Chest PA and lateral\n"
    " \n"
    " COMPARISON:  ___\n"
    " \n"
    " FINDINGS: \n"
    " \n"
    " The lungs are clear without focal consolidation.  No pleural effusion or\n"
    " pneumothorax.  Heart size normal.\n"
    " \n"
    " IMPRESSION: \n"
    " \n"
    " No acute cardiopulmonary process.\n"
)


def test_real_layout():
    s = split_sections(REPORT)
    assert s.names == ["preamble", "examination", "indication", "technique", "comparison", "findings", "impression"]
    f = extract_report_fields(REPORT)
    assert f.findings == "The lungs are clear without focal consolidation. No pleural effusion or pneumothorax. " \
                         "Heart size normal."
    assert f.impression == "No acute cardiopulmonary process."
    assert (f.indication, f.technique, f.comparison) == ("___ year old woman with cough // eval pna",
                                                         "Chest PA and lateral", "___")


def test_without_leading_spaces_is_one_full_report():
    text = REPORT.replace("\n ", "\n")
    s = split_sections(text)
    assert s.names[0] == "full report" and extract_report_fields(text).findings == ""


def test_findings_and_impression_is_impression():
    text = "  FINAL REPORT\n FINDINGS AND IMPRESSION:  No change.\n"
    f = extract_report_fields(text)
    assert f.findings == "" and f.impression == "No change."
    assert normalize_section_name("FINDINGS/IMPRESSION") == "impression"


def test_empty_sections_removed_and_last_wins():
    text = "  FINAL REPORT\n FINDINGS: \n \n IMPRESSION:  x\n \n FINDINGS:  first line\n second line\n"
    s = split_sections(text)
    assert s.names == ["preamble", "impression", "findings"]
    assert extract_report_fields(text).findings == "first line second line"
    text2 = "  FINAL REPORT\n FINDINGS:  one\n \n FINDINGS:  two\n"
    assert extract_report_fields(text2).findings == "two"


def test_name_normalisation():
    assert normalize_section_name("COMPARISONS") == "comparison"
    assert normalize_section_name("REASON FOR EXAMINATION") == "indication"
    assert normalize_section_name("CLINICAL HISTORY") == "history"
    assert normalize_section_name("IMPRESSON") == "impression"
    assert normalize_section_name("FINDNGS") == "findings"
    assert normalize_section_name("PA AND LATERAL VIEWS OF THE CHEST") == "findings"
    assert normalize_section_name("PORTABLE AP CHEST") == "findings"
    assert normalize_section_name("CONCLUSION") == "impression"
    assert normalize_section_name("WET READ") == "wet read"


def test_last_paragraph_and_fallbacks():
    text = "  FINAL REPORT\n HISTORY:  fever\n \n EXAMINATION:  CHEST\n \n No change.\n \n Stable lines.\n"
    s = split_sections(text)
    # official rule: the last section keeps its first paragraph, everything after it is the last paragraph
    assert s.names[-1] == "last_paragraph" and s.texts[-1] == " No change.\n \n Stable lines.\n"
    assert s.texts[-2] == " CHEST"
    f = extract_report_fields(text)
    assert f.indication == "fever" and f.findings == ""
    assert extract_report_fields(text, context_fallbacks=False).indication == ""


# Header -> section pairs stated by MIT-LCP mimic-cxr ``txt/section_parser.py`` (commit 3190146): its
# frequent-section table (typos included), its main-section substrings and its view/exam title fragments.
OFFICIAL_CASES = {
    "FINDNINGS": "findings", "FINDINDGS": "findings", "FINDGINGS": "findings", "FINIDNGS": "findings",
    "FINDINS": "findings", "FINDING": "findings", "REFERENCE FINDINGS": "findings",
    "IMPESSION": "impression", "MPRESSION": "impression", "IMPERSSION": "impression", "NDICATION": "impression",
    "FINDINGS/ IMPRESSION": "impression", "FINDINGS AND IMPRESSION": "impression", "CONCLUSION": "impression",
    "CLINICAL INFORMATION": "history", "PFI": "history", "PATIENT HISTORY": "history",
    "REFERENCE EXAM": "comparison", "COMPARISON FILM": "comparison", "COMPARRISON": "comparison",
    "TECHNIQUE AND COMPARISON": "comparison", "WETREAD": "wet read", "DATE": "date", "COMMENT": "comment",
    "ONE VIEW": "findings", "LATERAL AND PA": "findings", "LEFT RIBS": "findings", "BILATERAL RIBS": "findings",
    "CHEST, THREE VIEWS": "findings", "BONE WINDOW": "findings", "FRONTAL UPRIGHT": "findings",
    "FRONTAL SEMI-UPRIGHT": "findings", "PA AND LAT": "findings", "LATERAL AND AP": "findings",
    "AP AND LATERAL": "findings", "FRONTAL AND LATERAL": "findings", "AP VIEW": "findings",
    "PORTABLE SUPINE": "findings", "CHEST (PA AND LAT)": "findings",
    # names the official rules leave alone
    "THREE VIEWS": "three views", "SUPINE": "supine", "SINGLE VIEW": "single view",
}


def test_official_header_table_parity():
    for raw, expected in OFFICIAL_CASES.items():
        assert normalize_section_name(raw) == expected, raw


def test_context_names_only_where_official_rules_leave_the_name():
    # step 4: indication/technique substrings, after the official rules
    assert normalize_section_name("INDICATION FOR EXAM") == "indication"
    assert normalize_section_name("TECHNIQUES") == "technique"
    assert normalize_section_name("CHEST TECHNIQUE") == "findings"  # official view title first
    assert normalize_section_name("HISTORY/INDICATION") == "history"  # official main section first


def test_typo_findings_header_is_the_target():
    text = ("                                 FINAL REPORT\n INDICATION:  cough\n \n FINDNINGS: \n \n"
            " Lungs are clear.\n \n IMPRESSION:  Normal.\n")
    assert extract_report_fields(text).findings == "Lungs are clear."
    text = "  FINAL REPORT\n ONE VIEW:  Heart is normal.\n \n IMPRESSION:  Normal.\n"
    assert extract_report_fields(text).findings == "Heart is normal."
