"""Finding a suitable Java: the one start-up failure that happens before any service has a log."""

from __future__ import annotations

import pytest

from stack.services import StackError, find_java, java_major


@pytest.mark.jdk
def test_finds_a_java_17_for_kafka_and_cassandra():
    java = find_java(17, maximum=17)
    assert java_major(java) == 17


@pytest.mark.jdk
def test_the_registry_gets_java_21_or_newer():
    assert java_major(find_java(21)) >= 21


def test_no_suitable_java_says_what_to_install():
    with pytest.raises(StackError, match=r"no Java 99\+ found \(looked at .*\)\. Install one and set JAVA_HOME"):
        find_java(99, preferred_home="/nonexistent/jdk")
