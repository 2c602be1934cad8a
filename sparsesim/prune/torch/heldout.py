"""Held-out evaluation text (public domain) for the language models, disjoint from the
calibration text of ``calibration.py``: no passage appears in both, so the accuracy reported
beside a trace is never measured on the inputs that chose its masks.

Passages: Genesis 1:1-10 (King James Version, 1611), Hamlet III.1 (Shakespeare), the Preamble
of the United States Constitution (1787), the opening of Great Expectations (Dickens, 1861)
and the first stanza of The Raven (Poe, 1845).
"""

TEXT = """\
In the beginning God created the heaven and the earth. And the earth was without form, and \
void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of \
the waters. And God said, Let there be light: and there was light. And God saw the light, that \
it was good: and God divided the light from the darkness. And God called the light Day, and \
the darkness he called Night. And the evening and the morning were the first day. And God \
said, Let there be a firmament in the midst of the waters, and let it divide the waters from \
the waters. And God made the firmament, and divided the waters which were under the firmament \
from the waters which were above the firmament: and it was so. And God called the firmament \
Heaven. And the evening and the morning were the second day. And God said, Let the waters under \
the heaven be gathered together unto one place, and let the dry land appear: and it was so. \
And God called the dry land Earth; and the gathering together of the waters called he Seas: \
and God saw that it was good.

To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the \
slings and arrows of outrageous fortune, or to take arms against a sea of troubles, and by \
opposing end them. To die: to sleep; no more; and by a sleep to say we end the heart-ache and \
the thousand natural shocks that flesh is heir to, 'tis a consummation devoutly to be wished. \
To die, to sleep; to sleep: perchance to dream: ay, there's the rub; for in that sleep of \
death what dreams may come when we have shuffled off this mortal coil, must give us pause.

We the People of the United States, in Order to form a more perfect Union, establish Justice, \
insure domestic Tranquility, provide for the common defence, promote the general Welfare, and \
secure the Blessings of Liberty to ourselves and our Posterity, do ordain and establish this \
Constitution for the United States of America.

My father's family name being Pirrip, and my Christian name Philip, my infant tongue could \
make of both names nothing longer or more explicit than Pip. So, I called myself Pip, and came \
to be called Pip. I give Pirrip as my father's family name, on the authority of his tombstone \
and my sister, Mrs. Joe Gargery, who married the blacksmith. As I never saw my father or my \
mother, and never saw any likeness of either of them, my first fancies regarding what they \
were like were unreasonably derived from their tombstones.

Once upon a midnight dreary, while I pondered, weak and weary, over many a quaint and curious \
volume of forgotten lore, while I nodded, nearly napping, suddenly there came a tapping, as of \
some one gently rapping, rapping at my chamber door. "'Tis some visitor," I muttered, "tapping \
at my chamber door; only this and nothing more."
"""
