AAAAAAA
0fm@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@0PPP0
fm16-a
fc.0.weithg
	fc.0.bias
fc.2.weigt: 
	fc.2.bias 
fc.4.0.biac  2
	fc.4.bias 
fc.3.weig(t
 
	fc.8.bias
	*generic"nino_no_posw(Ë08êN