"""PETra (Laszka et al. 2017): the DSO, the smart meter, the wallet, and the privacy protocol: CoinShuffle mixing
(`coinshuffle`), onion-routed channels (`onion`), the bid store (`bidstore`), settlement (`settlement`), the
prosumer and bid-store operator roles (`prosumer`, `operator`) and the DSO-side microgrid controller (`controller`)."""
