"""The one wording of "no person found": what was searched and what was found."""
from services.common.errors import NoPersonFound, no_person_found


def test_image_with_nobody_names_the_image_and_the_person_limit():
    error = no_person_found(1, 0, still_image=True, max_persons=4)
    assert isinstance(error, NoPersonFound)
    assert str(error) == "no person found: searched the image for up to 4 persons; nobody was detected"


def test_video_with_short_tracks_says_how_much_was_found_and_needed():
    error = no_person_found(24, 3, min_track_frames=5, longest_track=2)
    assert str(error) == ("no person found: searched 24 frames; 3 of 24 frames had a detection, "
                          "but the longest track has 2 frames and 5 are needed")
    assert str(no_person_found(1, 0)) == "no person found: searched 1 frame; nobody was detected"
