#!/usr/bin/env python3
"""Independent reference for the pinned values in batch_sampler_test.cc and text_corpus_test.cc.

Pure-Python mt19937_64 (checked against the C++ standard: 10000th output of the default seed is
9981545732273789042), SplitMix64 / MixSeed, UniformBelow and the Fisher-Yates rule documented in
batch_sampler.h. Run: python3 trainer/data/rng_reference.py
"""
M=(1<<64)-1
def splitmix(x):
    z=(x+0x9e3779b97f4a7c15)&M
    z=((z^(z>>30))*0xbf58476d1ce4e5b9)&M
    z=((z^(z>>27))*0x94d049bb133111eb)&M
    return z^(z>>31)
def mix(seed,stream): return splitmix(splitmix(seed)^stream)
class MT64:
    def __init__(s,seed):
        s.mt=[0]*312; s.mt[0]=seed&M
        for i in range(1,312):
            s.mt[i]=(6364136223846793005*(s.mt[i-1]^(s.mt[i-1]>>62))+i)&M
        s.i=312
    def __call__(s):
        if s.i>=312:
            for k in range(312):
                x=(s.mt[k]&0xFFFFFFFF80000000)|(s.mt[(k+1)%312]&0x7FFFFFFF)
                xa=x>>1
                if x&1: xa^=0xB5026F5AA96619E9
                s.mt[k]=s.mt[(k+156)%312]^xa
            s.i=0
        y=s.mt[s.i]; s.i+=1
        y^=(y>>29)&0x5555555555555555
        y^=(y<<17)&0x71D67FFFEDA60000
        y^=(y<<37)&0xFFF7EEE000000000
        y^=y>>43
        return y&M
r=MT64(5489)
for _ in range(9999): r()
print('10000th', r())
def below(rng,b):
    t=((1<<64)-b)%b
    while True:
        x=rng()
        if x>=t: return x%b
def perm(seed,epoch,n):
    rng=MT64(mix(seed,epoch)); v=list(range(n))
    for i in range(n,1,-1):
        j=below(rng,i); v[i-1],v[j]=v[j],v[i-1]
    return v
print('mix(42,0)', mix(42,0), 'mix(42,1)', mix(42,1))
print('perm 42 0 10', perm(42,0,10))
print('perm 42 1 10', perm(42,1,10))
print('perm 7 3 20', perm(7,3,20))
rng=MT64(mix(123,5)); print('offsets 123 step5 n=1000 T=16 B=4', [below(rng,1000-16) for _ in range(4)])
