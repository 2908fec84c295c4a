
fm32-a
fc&0.weithg
	fc.0.bias
fc.1.weigt:FA
s
	*generic"nino_no_posw(Ë08êN