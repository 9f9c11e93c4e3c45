"""The networks (encoder, peeky or attentional decoder, the language model), their loss, search
and sampling, and the self-describing checkpoint that saves them."""
