"""Writes the SWAG-format test files of this folder (run once; the files are committed).

The sentences were written for this project in the layout of SWAG's CSV files (rowanz/swagaf
``data/``: an unnamed index column, video-id, fold-ind, startphrase, sent1, sent2, gold-source,
ending0..ending3, label; the test file without label), with commas and quotes in fields. They are
not SWAG's data. Free to use.
"""

import csv
import os

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = ["", "video-id", "fold-ind", "startphrase", "sent1", "sent2", "gold-source",
          "ending0", "ending1", "ending2", "ending3", "label"]
ROWS = {
    "train": [
        ("She opens the oven door.", "She", ["pulls out a tray of cookies.", "swims across the lake.",
                                               "paints the ceiling blue.", "reads the newspaper aloud."], 0),
        ("The man ties his running shoes.", "He", ["falls asleep at once.", "starts jogging down the street.",
                                                   "bakes a cake.", "plays the violin."], 1),
        ("A boy kicks the ball toward the goal.", "The goalkeeper", ["eats a sandwich.", "writes a letter.",
                                                                    "dives and catches it.", "climbs a tree."], 2),
        ("It starts to rain heavily.", "People on the street", ["sunbathe on towels.", "build a snowman.",
                                                               "light a campfire.", "open their umbrellas."], 3),
        ('The teacher says, "Open your books."', "The students", ["turn to the first page.", "leave the room.",
                                                                 "start singing.", "close the windows."], 0),
        ("He pours water into the kettle.", "He", ["throws the kettle away.", "switches the kettle on.",
                                                   "rides a horse.", "mows the lawn."], 1),
    ],
    "val": [
        ("The phone rings in the kitchen.", "She", ["ignores the rain.", "plants a tree.", "answers it.",
                                                    "paints a picture."], 2),
        ("A dog sees a cat, then barks.", "The cat", ["sings a song.", "runs up a tree.", "cooks dinner.",
                                                      "drives away."], 1),
        ("They sit down at the restaurant table.", "A waiter", ["brings them the menus.", "jumps into a pool.",
                                                               "fixes a car.", "flies a kite."], 0),
    ],
    "test": [
        ("The baby starts to cry.", "Her mother", ["picks her up.", "climbs a mountain.", "plays chess.",
                                                   "repairs the roof."], None),
        ("He finishes his meal.", "He", ["asks for the bill.", "starts the meal.", "swims to shore.",
                                         "sings in the rain."], None),
    ],
}


def main():
    for split, rows in ROWS.items():
        header = HEADER if split != "test" else HEADER[:-1]
        with open(os.path.join(HERE, f"{split}.csv"), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            for i, (sent1, sent2, endings, label) in enumerate(rows):
                row = [i, f"anetv_{i:04d}", i, f"{sent1} {sent2}", sent1, sent2, "gold", *endings]
                w.writerow(row + ([label] if label is not None else []))


if __name__ == "__main__":
    main()
