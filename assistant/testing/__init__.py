"""Test helpers shipped with the package: controllable fakes and test speech."""
