import pytest

from engine.errors import HostsFileError
from engine.fleet.hosts import parse_hosts, read_hosts


def test_comments_blank_lines_and_normalisation():
    text = "# fleet\n\nhttp://10.0.0.5:8000\nhttp://10.0.0.6:8000/   # trailing slash\nhttps://gpu7.example:443/v1\n"
    assert parse_hosts(text) == ["http://10.0.0.5:8000", "http://10.0.0.6:8000", "https://gpu7.example:443"]


@pytest.mark.parametrize(
    "line",
    ["10.0.0.5:8000", "ftp://x:1", "http://", "http://a b:1", "http://host:notaport", "http://h:1/?q=1"],
)
def test_malformed_lines_name_file_and_line(line):
    with pytest.raises(HostsFileError, match=r"hosts.txt:2: .* is not a base URL"):
        parse_hosts(f"http://ok:1\n{line}\n", "hosts.txt")


def test_duplicates_and_empty_files_are_errors():
    with pytest.raises(HostsFileError, match="listed twice"):
        parse_hosts("http://a:1\nhttp://a:1/\n")
    with pytest.raises(HostsFileError, match="no servers"):
        parse_hosts("# nothing\n\n")


def test_missing_file(tmp_path):
    with pytest.raises(HostsFileError, match="does not exist"):
        read_hosts(tmp_path / "nope.txt")
