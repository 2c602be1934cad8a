"""Local calibration text (public domain) for the language models: no data set download.

Wanda's paper calibrates on 128 sequences of C4; offline we use these few thousand tokens
of English prose, cut into windows (``models._windows``).
"""

TEXT = """\
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age \
of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season \
of Light, it was the season of Darkness, it was the spring of hope, it was the winter of \
despair, we had everything before us, we had nothing before us, we were all going direct to \
Heaven, we were all going direct the other way - in short, the period was so far like the \
present period, that some of its noisiest authorities insisted on its being received, for good \
or for evil, in the superlative degree of comparison only.

It is a truth universally acknowledged, that a single man in possession of a good fortune, \
must be in want of a wife. However little known the feelings or views of such a man may be on \
his first entering a neighbourhood, this truth is so well fixed in the minds of the \
surrounding families, that he is considered the rightful property of some one or other of \
their daughters. "My dear Mr. Bennet," said his lady to him one day, "have you heard that \
Netherfield Park is let at last?" Mr. Bennet replied that he had not. "But it is," returned \
she; "for Mrs. Long has just been here, and she told me all about it." Mr. Bennet made no \
answer. "Do you not want to know who has taken it?" cried his wife impatiently. "You want to \
tell me, and I have no objection to hearing it." This was invitation enough.

Four score and seven years ago our fathers brought forth on this continent, a new nation, \
conceived in Liberty, and dedicated to the proposition that all men are created equal. Now we \
are engaged in a great civil war, testing whether that nation, or any nation so conceived and \
so dedicated, can long endure. We are met on a great battle-field of that war. We have come to \
dedicate a portion of that field, as a final resting place for those who here gave their lives \
that that nation might live. It is altogether fitting and proper that we should do this. But, \
in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground. \
The brave men, living and dead, who struggled here, have consecrated it, far above our poor \
power to add or detract. The world will little note, nor long remember what we say here, but \
it can never forget what they did here.

Call me Ishmael. Some years ago - never mind how long precisely - having little or no money in \
my purse, and nothing particular to interest me on shore, I thought I would sail about a little \
and see the watery part of the world. It is a way I have of driving off the spleen, and \
regulating the circulation. Whenever I find myself growing grim about the mouth; whenever it is \
a damp, drizzly November in my soul; whenever I find myself involuntarily pausing before coffin \
warehouses, and bringing up the rear of every funeral I meet; then, I account it high time to \
get to sea as soon as I can.

The sun shone, having no alternative, on the nothing new. A computer is a machine that can be \
programmed to carry out sequences of arithmetic or logical operations automatically. Modern \
digital computers can perform generic sets of operations known as programs, which enable them \
to perform a wide range of tasks. A neural network is made of layers of simple units; each unit \
multiplies its inputs by weights, adds them up and passes the sum through a nonlinear function. \
Pruning removes the weights that matter least, so that a smaller, faster network does nearly \
the same job. Accelerators built for sparse networks skip the multiplications by zero, and the \
art of designing them is to keep every multiplier busy while the zeros fall where they may.

Alice was beginning to get very tired of sitting by her sister on the bank, and of having \
nothing to do: once or twice she had peeped into the book her sister was reading, but it had \
no pictures or conversations in it, "and what is the use of a book," thought Alice, "without \
pictures or conversations?" So she was considering in her own mind (as well as she could, for \
the hot day made her feel very sleepy and stupid), whether the pleasure of making a \
daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a \
White Rabbit with pink eyes ran close by her. There was nothing so very remarkable in that; \
nor did Alice think it so very much out of the way to hear the Rabbit say to itself, "Oh dear! \
Oh dear! I shall be late!"

We hold these truths to be self-evident, that all men are created equal, that they are endowed \
by their Creator with certain unalienable Rights, that among these are Life, Liberty and the \
pursuit of Happiness. That to secure these rights, Governments are instituted among Men, \
deriving their just powers from the consent of the governed. Prudence, indeed, will dictate \
that Governments long established should not be changed for light and transient causes; and \
accordingly all experience hath shewn, that mankind are more disposed to suffer, while evils \
are sufferable, than to right themselves by abolishing the forms to which they are accustomed.
"""
