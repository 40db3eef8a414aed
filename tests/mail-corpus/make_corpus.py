import base64, quopri, os, textwrap
OUT = os.path.dirname(os.path.abspath(__file__))
INV = 'cpm.7f3a9c2e41d8@iwf.example.com'
INV2 = 'cpm.1b2c3d4e5f60@iwf.example.com'

def qp(text, charset='utf-8'):
    return quopri.encodestring(text.encode(charset)).decode('ascii')

def b64(data, width=76):
    s = base64.b64encode(data).decode('ascii')
    return '\n'.join(s[i:i+width] for i in range(0, len(s), width))

def write(name, eml, txt, toml=None, crlf=False):
    eml = textwrap.dedent(eml).lstrip('\n') if not isinstance(eml, bytes) else eml
    if isinstance(eml, str):
        if crlf:
            eml = eml.replace('\r\n', '\n').replace('\n', '\r\n')
        eml = eml.encode('utf-8') if not isinstance(eml, bytes) else eml
    open(os.path.join(OUT, name + '.eml'), 'wb').write(eml)
    open(os.path.join(OUT, name + '.txt'), 'w').write(txt + '\n')
    p = os.path.join(OUT, name + '.toml')
    if toml:
        open(p, 'w').write(textwrap.dedent(toml).lstrip('\n'))
    elif os.path.exists(p):
        os.remove(p)

def hdr(frm, subj, date, mid, extra=''):
    return f"""Return-Path: <{frm[1]}>
Received: from mail.example.net (mail.example.net [198.51.100.7])
	by mx.iwf.example.com (Postfix) with ESMTPS id 4Zk9Q51x2Pz9sWb
	for <alice.cpm@iwf.example.com>; {date}
From: {frm[0]} <{frm[1]}>
Date: {date}
Message-ID: <{mid}>
Subject: {subj}
To: Alice via Chat <alice.cpm@iwf.example.com>
In-Reply-To: <{INV}>
References: <{INV}>
{extra}MIME-Version: 1.0
"""

def multipart(boundary, *parts, preamble=''):
    """A multipart body: `preamble`, each part (headers, body), the close delimiter. The
    headers are without the blank line that ends them."""
    delimited = ''.join(f'--{boundary}\n{headers}\n\n{body}\n' for headers, body in parts)
    return f'{preamble}{delimited}--{boundary}--\n'

def alternative(boundary, plain, html, charset='UTF-8', encoding=None):
    """The body of a multipart/alternative as Gmail, Outlook and Exchange write it: text/plain
    then text/html, in `charset` (a Python codec name too), as they are or in `encoding`
    ('quoted-printable' or 'base64')."""
    encode = {
        None: lambda text: text,
        'quoted-printable': lambda text: qp(text, charset),
        'base64': lambda text: b64(text.encode(charset)),
    }[encoding]
    cte = f'\nContent-Transfer-Encoding: {encoding}' if encoding else ''
    return multipart(boundary, *(
        (f'Content-Type: text/{subtype}; charset="{charset}"{cte}', encode(text))
        for subtype, text in (('plain', plain), ('html', html))))

def gmail_alternative(boundary, plain, html, encoding=None):
    """Gmail's multipart/alternative, from its Content-Type line: UTF-8 plain and HTML."""
    return (f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'
            + alternative(boundary, plain, html, 'UTF-8', encoding))

BOB = ('Bob Example', 'bob@example.net')
INVITE_TEXT = "Alice invites you to a chat.\nReply with your message to join, or \"leave\" to end it.\n\nHi Bob, do you have a minute?"
QUOTED = '\n'.join('> ' + l if l else '>' for l in INVITE_TEXT.split('\n'))
INVITE_HTML = "Alice invites you to a chat.<br>Reply with your message to join, or &quot;leave&quot; to end it.<br><br>Hi Bob, do you have a minute?"

# 1. Gmail web: multipart/alternative, attribution wrapped in the plain part.
plain = f"""Sounds good, I'm in. Let's talk at 5pm.

Bob

On Thu, Nov 26, 2026 at 2:15 PM Alice via Chat <alice.cpm@iwf.example.com>
wrote:

{QUOTED}
"""
html = f"""<div dir="ltr">Sounds good, I&#39;m in. Let&#39;s talk at 5pm.<div><br></div><div>Bob</div></div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Thu, Nov 26, 2026 at 2:15 PM Alice via Chat &lt;<a href="mailto:alice.cpm@iwf.example.com">alice.cpm@iwf.example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid rgb(204,204,204);padding-left:1ex">{INVITE_HTML}</blockquote></div>
"""
write('gmail_alternative_quoted', hdr(BOB, 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 14:21:07 +0000', 'CAFx8ZrE2n_7qkD0Vb1wQ@mail.gmail.com') + gmail_alternative('000000000000a1b2c3060d5e8f90', plain, html), "Sounds good, I'm in. Let's talk at 5pm.\n\nBob")

# 2. Gmail HTML-only (sent through the Gmail API / a mail merge: no text/plain), QP.
html = f"""<div dir="ltr"><div>Tom &amp; I will both join &ndash; caf&eacute; at 5?</div><ul><li>agenda first</li><li>then Q&amp;A</li></ul><div>Thanks&nbsp;&#x1F44D;</div><div><br></div><span class="gmail_signature_prefix">-- </span><br><div dir="ltr" class="gmail_signature"><div>Bob Example | ACME</div></div></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Thu, Nov 26, 2026 at 2:15 PM Alice via Chat &lt;alice.cpm@iwf.example.com&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">{INVITE_HTML}</blockquote></div>
"""
write('gmail_html_only', hdr(BOB, 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 14:22:40 +0000', 'CAFx8ZrGq4uP1=vE9@mail.gmail.com') + f"""Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

{qp(html)}""", "Tom & I will both join – café at 5?\n- agenda first\n- then Q&A\nThanks 👍", """
body_source = "html"
""")

# 3. Outlook desktop (Microsoft Outlook 16): alternative, windows-1252, quoted-printable,
# Word HTML with divRplyFwdMsg. CRLF.
CAROL = ('Carol Smith', 'carol.smith@contoso.com')
plain = """I\u2019ll join \u2013 give me 10 minutes to finish a call.

Regards,
Carol

________________________________
From: Alice via Chat <alice.cpm@iwf.example.com>
Sent: Thursday, November 26, 2026 2:15 PM
To: Carol Smith <carol.smith@contoso.com>
Subject: Chat invitation from Alice

""" + INVITE_TEXT + "\n"
html = """<html xmlns:v="urn:schemas-microsoft-com:vml" xmlns:o="urn:schemas-microsoft-com:office:office" xmlns:w="urn:schemas-microsoft-com:office:word" xmlns:m="http://schemas.microsoft.com/office/2004/12/omml" xmlns="http://www.w3.org/TR/REC-html40">
<head>
<meta http-equiv="Content-Type" content="text/html; charset=Windows-1252">
<meta name="Generator" content="Microsoft Word 15 (filtered medium)">
<style><!--
/* Font Definitions */
@font-face
	{font-family:"Cambria Math";
	panose-1:2 4 5 3 5 4 6 3 2 4;}
p.MsoNormal, li.MsoNormal, div.MsoNormal
	{margin:0cm;
	font-size:11.0pt;
	font-family:"Calibri",sans-serif;}
--></style><!--[if gte mso 9]><xml>
<o:shapedefaults v:ext="edit" spidmax="1026" />
</xml><![endif]-->
</head>
<body lang="EN-US" link="#0563C1" vlink="#954F72" style="word-wrap:break-word">
<div class="WordSection1">
<p class="MsoNormal">I\u2019ll join \u2013 give me 10&nbsp;minutes to finish a call.<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<p class="MsoNormal">Regards,<o:p></o:p></p>
<p class="MsoNormal">Carol<o:p></o:p></p>
<p class="MsoNormal"><o:p>&nbsp;</o:p></p>
<div id="mail-editor-reference-message-container">
<div>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">
<div id="divRplyFwdMsg">
<p class="MsoNormal"><b><span style="color:black">From:</span></b><span style="color:black"> Alice via Chat &lt;alice.cpm@iwf.example.com&gt;<br>
<b>Sent:</b> Thursday, November 26, 2026 2:15 PM<br>
<b>To:</b> Carol Smith &lt;carol.smith@contoso.com&gt;<br>
<b>Subject:</b> Chat invitation from Alice<o:p></o:p></span></p>
</div>
</div>
<p class="MsoNormal">""" + INVITE_HTML + """<o:p></o:p></p>
</div>
</div>
</div>
</body>
</html>
"""
write('outlook_desktop', f"""Received: from EUR05-AM6-obe.outbound.protection.outlook.com (mail-am6eur05on2107.outbound.protection.outlook.com [40.107.22.107])
	by mx.iwf.example.com (Postfix) with ESMTPS id 4Zk9R02kLqz9sWc
	for <alice.cpm@iwf.example.com>; Thu, 26 Nov 2026 14:31:52 +0000 (UTC)
From: Carol Smith <carol.smith@contoso.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: RE: Chat invitation from Alice
Thread-Topic: Chat invitation from Alice
Thread-Index: AQHbQ2Ux3Vq0W1kz8UOr4K4yJc2fZw==
Date: Thu, 26 Nov 2026 14:31:49 +0000
Message-ID: <AM6PR05MB5926D1C0E7B3A8F9D3E2C1A4B4872@AM6PR05MB5926.eurprd05.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
Content-Type: multipart/alternative;
	boundary="_000_AM6PR05MB5926D1C0E7B3A8F9D3E2C1A4B4872AM6PR05MB5926eurp_"
MIME-Version: 1.0

{alternative('_000_AM6PR05MB5926D1C0E7B3A8F9D3E2C1A4B4872AM6PR05MB5926eurp_', plain, html, 'Windows-1252', 'quoted-printable')}""", "I\u2019ll join \u2013 give me 10 minutes to finish a call.\n\nRegards,\nCarol", """
from = "carol.smith@contoso.com"
from_name = "Carol Smith"
subject = "RE: Chat invitation from Alice"
date = "2026-11-26T14:31:49+00:00"
in_reply_to = ["cpm.7f3a9c2e41d8@iwf.example.com"]
""", crlf=True)

# 3b. The same Outlook HTML reply with no text/plain (a gateway that kept only HTML):
# exercises divRplyFwdMsg and Word's MsoNormal paragraphs.
write('outlook_desktop_html_only', f"""From: Carol Smith <carol.smith@contoso.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: RE: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:31:49 +0000
Message-ID: <AM6PR05MB5926E2D1F8C4B9A0E4F3D2B5C5983@AM6PR05MB5926.eurprd05.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
Content-Language: en-US
X-MS-Has-Attach:
Content-Type: text/html; charset="Windows-1252"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(html, 'cp1252')}""", "I\u2019ll join \u2013 give me 10 minutes to finish a call.\n\nRegards,\nCarol", """
body_source = "html"
""", crlf=True)

# 4. Outlook for iOS: "Get Outlook for iOS", underscore line + From block.
plain = """Yes please, add Dave too.

Get Outlook for iOS<https://aka.ms/o0ukef>
________________________________
From: Alice via Chat <alice.cpm@iwf.example.com>
Sent: Thursday, November 26, 2026 3:15:02 PM
To: erin@outlook.com <erin@outlook.com>
Subject: Chat invitation from Alice

""" + INVITE_TEXT + "\n"
html = """<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
</head>
<body>
<div dir="auto" style="direction: ltr; margin: 0; padding: 0; font-family: sans-serif; font-size: 11pt; color: black; ">
Yes please, add Dave too.<br>
</div>
<div dir="auto" style="direction: ltr; margin: 0; padding: 0; font-family: sans-serif; font-size: 11pt; color: black; ">
<br>
</div>
<div id="ms-outlook-mobile-signature" dir="auto" style="direction: ltr; margin: 0; padding: 0; font-family: sans-serif; font-size: 11pt; color: black; ">
Get <a href="https://aka.ms/o0ukef">Outlook for iOS</a></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Alice via Chat &lt;alice.cpm@iwf.example.com&gt;<br>
<b>Sent:</b> Thursday, November 26, 2026 3:15:02 PM<br>
<b>To:</b> erin@outlook.com &lt;erin@outlook.com&gt;<br>
<b>Subject:</b> Chat invitation from Alice</font>
<div>&nbsp;</div>
</div>
<div>""" + INVITE_HTML + """</div>
</body>
</html>
"""
ERIN = ('Erin Jones', 'erin@outlook.com')
write('outlook_ios', f"""Received: from NAM12-BN8-obe.outbound.protection.outlook.com (mail-bn8nam12olkn2084.outbound.protection.outlook.com [40.92.21.84])
	by mx.iwf.example.com (Postfix) with ESMTPS id 4Zk9S7bQw3z9sWd
	for <alice.cpm@iwf.example.com>; Thu, 26 Nov 2026 15:17:30 +0000 (UTC)
From: Erin Jones <erin@outlook.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
Thread-Topic: Chat invitation from Alice
Date: Thu, 26 Nov 2026 15:17:28 +0000
Message-ID: <BN8PR12MB33616B2F4A1C9E0D8F7A6B5CB9A12@BN8PR12MB3361.namprd12.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
Content-Language: en-US
X-MS-Has-Attach:
Content-Type: multipart/alternative;
	boundary="_000_BN8PR12MB33616B2F4A1C9E0D8F7A6B5CB9A12BN8PR12MB3361namp_"
MIME-Version: 1.0

{alternative('_000_BN8PR12MB33616B2F4A1C9E0D8F7A6B5CB9A12BN8PR12MB3361namp_', plain, html, 'us-ascii', 'quoted-printable')}""", "Yes please, add Dave too.", None, crlf=True)

# 5. Apple Mail (macOS): plain format=flowed (soft breaks, space-stuffing) + HTML with
# <blockquote type="cite">. Apple-Mail boundary.
plain = """Yes, I can join the chat this afternoon. I have a few questions about the \nbudget we discussed on Monday, so let's go through them first.\n\n From the slides: is the number on page 3 final?\n\nFrank\n\n> On 26 Nov 2026, at 15:15, Alice via Chat <alice.cpm@iwf.example.com> wrote:\n> \n""" + '\n'.join('> ' + l for l in INVITE_TEXT.split('\n')) + "\n> \n\n"
html = """<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body style="overflow-wrap: break-word; -webkit-nbsp-mode: space; line-break: after-white-space;">Yes, I can join the chat this afternoon. I have a few questions about the budget we discussed on Monday, so let’s go through them first.<div><br></div><div>&nbsp;From the slides: is the number on page 3 final?</div><div><br></div><div>Frank<br id="lineBreakAtBeginningOfMessage"><div><br><blockquote type="cite"><div>On 26 Nov 2026, at 15:15, Alice via Chat &lt;alice.cpm@iwf.example.com&gt; wrote:</div><br class="Apple-interchange-newline"><div><div>""" + INVITE_HTML + """</div></div></blockquote></div><br></div></body></html>"""
FRANK = ('Frank Miller', 'frank@icloud.com')
write('apple_mail_flowed', f"""Return-Path: <frank@icloud.com>
From: Frank Miller <frank@icloud.com>
Content-Type: multipart/alternative;
	boundary="Apple-Mail=_8C1B1D5E-2F3A-4B5C-9D6E-7F8091A2B3C4"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3826.200.121\\))
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 16:20:11 +0100
References: <{INV}>
To: Alice via Chat <alice.cpm@iwf.example.com>
In-Reply-To: <{INV}>
Message-Id: <5E1D2C3B-4A59-4687-8F9E-0A1B2C3D4E5F@icloud.com>
X-Mailer: Apple Mail (2.3826.200.121)


--Apple-Mail=_8C1B1D5E-2F3A-4B5C-9D6E-7F8091A2B3C4
Content-Transfer-Encoding: 7bit
Content-Type: text/plain;
	charset=us-ascii;
	format=flowed

{plain}
--Apple-Mail=_8C1B1D5E-2F3A-4B5C-9D6E-7F8091A2B3C4
Content-Transfer-Encoding: quoted-printable
Content-Type: text/html;
	charset=utf-8

{qp(html)}
--Apple-Mail=_8C1B1D5E-2F3A-4B5C-9D6E-7F8091A2B3C4--
""", "Yes, I can join the chat this afternoon. I have a few questions about the budget we discussed on Monday, so let's go through them first.\n\nFrom the slides: is the number on page 3 final?\n\nFrank", """
body_source = "flowed-plain"
date = "2026-11-26T16:20:11+01:00"
message_id = "5E1D2C3B-4A59-4687-8F9E-0A1B2C3D4E5F@icloud.com"
""")

# 6. Thunderbird: plain format=flowed with "-- " signature + HTML with moz-cite-prefix.
plain = ("Count me in. I will dial in from the train, so the connection may drop \n"
         "now and then.\n\nOn 26/11/2026 15:15, Alice via Chat wrote:\n" + QUOTED + "\n\n-- \nGrace Hopper\nNavy Yard, Building 4\n")
html = """<!DOCTYPE html>
<html>
  <head>
    <meta http-equiv="Content-Type" content="text/html; charset=UTF-8">
  </head>
  <body>
    <p>Count me in. I will dial in from the train, so the connection may
      drop now and then.<br>
    </p>
    <div class="moz-cite-prefix">On 26/11/2026 15:15, Alice via Chat
      wrote:<br>
    </div>
    <blockquote type="cite"
      cite="mid:""" + INV + """">""" + INVITE_HTML + """</blockquote>
    <br>
    <pre class="moz-signature" cols="72">-- 
Grace Hopper
Navy Yard, Building 4</pre>
  </body>
</html>
"""
write('thunderbird_flowed', f"""Message-ID: <9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d@navy.example.org>
Date: Thu, 26 Nov 2026 15:40:03 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Subject: Re: Chat invitation from Alice
To: Alice via Chat <alice.cpm@iwf.example.com>
References: <{INV}>
Content-Language: en-US
From: Grace Hopper <grace@navy.example.org>
In-Reply-To: <{INV}>
Content-Type: multipart/alternative;
 boundary="------------2mQ1bS8T0nW4vX6yZ8aC0eG2"

This is a multi-part message in MIME format.
--------------2mQ1bS8T0nW4vX6yZ8aC0eG2
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit

{plain}
--------------2mQ1bS8T0nW4vX6yZ8aC0eG2
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 7bit

{html}
--------------2mQ1bS8T0nW4vX6yZ8aC0eG2--
""", "Count me in. I will dial in from the train, so the connection may drop now and then.", """
body_source = "flowed-plain"
from = "grace@navy.example.org"
from_name = "Grace Hopper"
""")

# 7. iPhone Mail: "Sent from my iPhone", QP UTF-8 plain + HTML (Apple-Mail boundary).
plain = "Running late, start without me \U0001F64F\n\nSent from my iPhone\n\n> On Nov 26, 2026, at 15:15, Alice via Chat <alice.cpm@iwf.example.com> wrote:\n> \n" + '\n'.join('> ' + l if l else '>' for l in INVITE_TEXT.split('\n')) + "\n"
html = """<html><head><meta http-equiv="content-type" content="text/html; charset=utf-8"></head><body dir="auto">Running late, start without me \U0001F64F<br id="lineBreakAtBeginningOfSignature"><div dir="ltr">Sent from my iPhone</div><div dir="ltr"><br><blockquote type="cite">On Nov 26, 2026, at 15:15, Alice via Chat &lt;alice.cpm@iwf.example.com&gt; wrote:<br><br></blockquote></div><blockquote type="cite"><div dir="ltr">""" + INVITE_HTML + """</div></blockquote></body></html>"""
write('iphone_sent_from', f"""Content-Type: multipart/alternative; boundary=Apple-Mail-3F2A1B0C-9D8E-4F7A-B6C5-D4E3F2A1B0C9
Content-Transfer-Encoding: 7bit
From: Henry Ford <henry.ford@me.com>
Mime-Version: 1.0 (1.0)
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 15:45:30 +0000
Message-Id: <7C6B5A49-3827-4165-9F8E-7D6C5B4A3928@me.com>
References: <{INV}>
In-Reply-To: <{INV}>
To: Alice via Chat <alice.cpm@iwf.example.com>
X-Mailer: iPhone Mail (22B91)


--Apple-Mail-3F2A1B0C-9D8E-4F7A-B6C5-D4E3F2A1B0C9
Content-Type: text/plain;
	charset=utf-8
Content-Transfer-Encoding: quoted-printable

{qp(plain)}
--Apple-Mail-3F2A1B0C-9D8E-4F7A-B6C5-D4E3F2A1B0C9
Content-Type: text/html;
	charset=utf-8
Content-Transfer-Encoding: quoted-printable

{qp(html)}
--Apple-Mail-3F2A1B0C-9D8E-4F7A-B6C5-D4E3F2A1B0C9--
""", "Running late, start without me \U0001F64F")

# 8. Gmail for Android: short reply, base64 plain + HTML (Gmail mobile base64-encodes).
plain = "Yes, I'm free now.\n\nOn Thu, 26 Nov 2026, 15:15 Alice via Chat, <alice.cpm@iwf.example.com> wrote:\n\n" + QUOTED + "\n"
html = """<div dir="auto">Yes, I&#39;m free now.</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Thu, 26 Nov 2026, 15:15 Alice via Chat, &lt;<a href="mailto:alice.cpm@iwf.example.com">alice.cpm@iwf.example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex">""" + INVITE_HTML + """</blockquote></div>
"""
write('android_gmail', hdr(('Ivan Petrov', 'ivan.petrov@gmail.com'), 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 15:50:12 +0000', 'CAKr9e0Z3p+Qm7v1tN_8xWcA@mail.gmail.com') + gmail_alternative('0000000000005f6e7d0627a8b9c1', plain, html, 'base64'), "Yes, I'm free now.")

# 9. German Thunderbird: ISO-8859-1, quoted-printable, "Am ... schrieb ...:".
plain = "Ja, gerne. Bis sp\u00e4ter \u2013 ich melde mich gleich.".replace('\u2013', '-') + "\n\nGr\u00fc\u00dfe\nJ\u00fcrgen\n\nAm 26.11.26 um 15:15 schrieb Alice via Chat:\n" + QUOTED + "\n"
write('german_thunderbird', f"""Message-ID: <c0ffee12-3456-4789-abcd-ef0123456789@web.example.de>
Date: Thu, 26 Nov 2026 16:02:44 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Subject: Re: Chat invitation from Alice
Content-Language: de-DE
To: Alice via Chat <alice.cpm@iwf.example.com>
References: <{INV}>
From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <juergen.mueller@web.example.de>
In-Reply-To: <{INV}>
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

{qp(plain, 'latin-1')}""", "Ja, gerne. Bis sp\u00e4ter - ich melde mich gleich.\n\nGr\u00fc\u00dfe\nJ\u00fcrgen", """
from_name = "J\u00fcrgen M\u00fcller"
""")

# 10. French Gmail: "Le jeu. 26 nov. 2026 \u00e0 15:15, ... a \u00e9crit :", UTF-8 QP, wrapped.
plain = "D'accord, j'arrive \u00e0 17h. \u00c0 tout \u00e0 l'heure !\n\nLe jeu. 26 nov. 2026 \u00e0 15:15, Alice via Chat <alice.cpm@iwf.example.com> a\n\u00e9crit :\n\n" + QUOTED + "\n"
html = """<div dir="ltr">D&#39;accord, j&#39;arrive \u00e0 17h. \u00c0 tout \u00e0 l&#39;heure\u00a0!</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">Le\u00a0jeu. 26 nov. 2026 \u00e0\u00a015:15, Alice via Chat &lt;<a href="mailto:alice.cpm@iwf.example.com">alice.cpm@iwf.example.com</a>&gt; a \u00e9crit\u00a0:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">""" + INVITE_HTML + """</blockquote></div>
"""
write('french_gmail', hdr(('Chlo\u00e9 Martin', 'chloe.martin@gmail.com'), 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 16:05:00 +0100', 'CAHd7u2sR0fE1kQ9Yp3wZb5N@mail.gmail.com').replace('From: Chlo\u00e9 Martin', 'From: =?UTF-8?Q?Chlo=C3=A9_Martin?=') + gmail_alternative('000000000000c3d4e5f60627a8b9d2', plain, html, 'quoted-printable'), "D'accord, j'arrive \u00e0 17h. \u00c0 tout \u00e0 l'heure !", """
from_name = "Chlo\u00e9 Martin"
""")

# 11. ISO-8859-1, base64 (a Portuguese webmail, Roundcube-style), "Em ... escreveu:".
plain = "Ol\u00e1 Alice,\n\naceito o convite. At\u00e9 j\u00e1!\n\nJo\u00e3o\n\nEm 26/11/2026 15:15, Alice via Chat escreveu:\n" + QUOTED + "\n"
write('iso8859_1_base64', f"""Return-Path: <joao@correio.example.pt>
MIME-Version: 1.0
Date: Thu, 26 Nov 2026 15:09:41 +0000
From: =?ISO-8859-1?Q?Jo=E3o_Silva?= <joao@correio.example.pt>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
In-Reply-To: <{INV}>
References: <{INV}>
Message-ID: <e3a1c0b5d2f47a96b8c1d0e9f2a3b4c5@correio.example.pt>
X-Sender: joao@correio.example.pt
User-Agent: Roundcube Webmail/1.6.9
Content-Type: text/plain; charset=ISO-8859-1;
 format=flowed
Content-Transfer-Encoding: base64

{b64(plain.encode('latin-1'))}
""", "Ol\u00e1 Alice,\n\naceito o convite. At\u00e9 j\u00e1!\n\nJo\u00e3o", """
body_source = "flowed-plain"
from_name = "Jo\u00e3o Silva"
""")

# 12. ISO-2022-JP (Japanese mail clients still default to it), 7bit, Gmail-JP attribution.
import email.header
plain = "\u4e86\u89e3\u3057\u307e\u3057\u305f\u3002\u53c2\u52a0\u3057\u307e\u3059\u3002\n\u3088\u308d\u3057\u304f\u304a\u9858\u3044\u3057\u307e\u3059\u3002\n\n2026\u5e7411\u670826\u65e5(\u6728) 15:15 Alice via Chat <alice.cpm@iwf.example.com>:\n" + QUOTED + "\n"
subj = email.header.Header('Re: \u30c1\u30e3\u30c3\u30c8\u306e\u62db\u5f85', 'iso-2022-jp').encode()
name = email.header.Header('\u5c71\u7530\u592a\u90ce', 'iso-2022-jp').encode()
write('iso2022jp', f"""Date: Fri, 27 Nov 2026 00:20:05 +0900
From: {name} <taro.yamada@example.co.jp>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: {subj}
Message-Id: <20261127002005.A1B2.C3D4E5F6@example.co.jp>
In-Reply-To: <{INV}>
References: <{INV}>
MIME-Version: 1.0
Content-Type: text/plain; charset="ISO-2022-JP"
Content-Transfer-Encoding: 7bit
X-Mailer: Becky! ver. 2.81.05 [ja]

""".encode('ascii') + plain.encode('iso-2022-jp'), "\u4e86\u89e3\u3057\u307e\u3057\u305f\u3002\u53c2\u52a0\u3057\u307e\u3059\u3002\n\u3088\u308d\u3057\u304f\u304a\u9858\u3044\u3057\u307e\u3059\u3002", """
from_name = "\u5c71\u7530\u592a\u90ce"
subject = "Re: \u30c1\u30e3\u30c3\u30c8\u306e\u62db\u5f85"
date = "2026-11-27T00:20:05+09:00"
""")

# 13. A reply that is only the quote (Gmail, user pressed send): never emptied.
plain = "On Thu, Nov 26, 2026 at 2:15 PM Alice via Chat <alice.cpm@iwf.example.com> wrote:\n\n" + QUOTED + "\n"
html = """<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Thu, Nov 26, 2026 at 2:15 PM Alice via Chat &lt;alice.cpm@iwf.example.com&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">""" + INVITE_HTML + """</blockquote></div>
"""
write('only_quote_gmail', hdr(BOB, 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 14:30:00 +0000', 'CAFx8ZrH0aa1bb2cc3dd@mail.gmail.com') + gmail_alternative('000000000000e1f2a3b40627a8b9e3', plain, html), plain.strip(), """
fell_back = true
""")

# 14. A body that is only a signature (mutt, "-- " separator): never emptied.
plain = "-- \nKate Bush\nWuthering Heights Ltd. | +44 20 7946 0958\n"
write('signature_only_mutt', f"""Date: Thu, 26 Nov 2026 14:35:12 +0000
From: Kate Bush <kate@heights.example.co.uk>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
Message-ID: <20261126143512.ab3cd4ef5gh6@heights.example.co.uk>
References: <{INV}>
In-Reply-To: <{INV}>
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii
Content-Disposition: inline
User-Agent: Mutt/2.2.13 (2024-03-09)

{plain}""", "--\nKate Bush\nWuthering Heights Ltd. | +44 20 7946 0958", """
fell_back = true
""")

# 15. A vacation auto-reply (Dovecot Pigeonhole Sieve vacation, RFC 3834 / RFC 5230).
write('vacation_sieve', f"""Return-Path: <>
Delivered-To: alice.cpm@iwf.example.com
Message-ID: <dovecot-sieve-1764170412-123456-0@mail.example.net>
Date: Thu, 26 Nov 2026 15:20:12 +0000
X-Sieve: Pigeonhole Sieve 0.5.21
From: Bob Example <bob@example.net>
To: <alice.cpm@iwf.example.com>
Subject: Auto: Chat invitation from Alice
In-Reply-To: <{INV}>
References: <{INV}>
Auto-Submitted: auto-replied (vacation)
Precedence: bulk
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

I am out of the office until 1 December with limited access to e-mail.
For urgent matters please contact Carol (carol@example.net).
""", "I am out of the office until 1 December with limited access to e-mail.\nFor urgent matters please contact Carol (carol@example.net).", """
kind = "auto-reply"
reason = "auto-submitted"
null_reverse_path = true
""")

# 16. An Exchange out-of-office ("Automatic reply:"), X-Auto-Response-Suppress: All.
html = """<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=us-ascii">
</head>
<body>
<div style="font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">
I am currently out of the office with no access to e-mail. I will be back on Monday.</div>
</body>
</html>
"""
write('exchange_oof', f"""Received: from AM9PR05MB8893.eurprd05.prod.outlook.com (2603:10a6:20b:4b2::11)
 by mx.iwf.example.com (Postfix) with ESMTPS id 4Zk9T8cRw4z9sWe
 for <alice.cpm@iwf.example.com>; Thu, 26 Nov 2026 15:22:41 +0000 (UTC)
From: Carol Smith <carol.smith@contoso.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Automatic reply: Chat invitation from Alice
Thread-Topic: Chat invitation from Alice
Date: Thu, 26 Nov 2026 15:22:40 +0000
Message-ID: <AM9PR05MB8893C1B2A3D4E5F6A7B8C9D0E1F2A@AM9PR05MB8893.eurprd05.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
X-MS-Has-Attach:
X-Auto-Response-Suppress: All
X-MS-Exchange-Inbox-Rules-Loop: carol.smith@contoso.com
X-MS-TNEF-Correlator:
Content-Type: text/html; charset="us-ascii"
Content-ID: <9E5B1A2C3D4E5F6A@eurprd05.prod.outlook.com>
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(html, 'ascii')}""", "I am currently out of the office with no access to e-mail. I will be back on Monday.", """
kind = "auto-reply"
reason = "x-auto-response-suppress"
body_source = "html"
""", crlf=True)

# 17. Postfix DSN bounce: multipart/report; report-type=delivery-status with
# text/rfc822-headers quoting the invitation's Message-ID.
dsn_text = """This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<nobody@example.net>: host mx2.example.net[203.0.113.25] said: 550 5.1.1
    <nobody@example.net>: Recipient address rejected: User unknown in virtual
    mailbox table (in reply to RCPT TO command)
"""
write('postfix_dsn', f"""Return-Path: <>
Received: by mx.example.net (Postfix)
	id 4Zk9V0dSx5z9sWf; Thu, 26 Nov 2026 14:15:04 +0000 (UTC)
Date: Thu, 26 Nov 2026 14:15:04 +0000 (UTC)
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: alice.cpm@iwf.example.com
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4Zk9V0dSx5z9sWf.1764166504/mx.example.net"
Content-Transfer-Encoding: 8bit
Message-Id: <20261126141504.4Zk9V0dSx5z9sWf@mx.example.net>

This is a MIME-encapsulated message.

--4Zk9V0dSx5z9sWf.1764166504/mx.example.net
Content-Description: Notification
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

{dsn_text}
--4Zk9V0dSx5z9sWf.1764166504/mx.example.net
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4Zk9V0dSx5z9sWf
X-Postfix-Sender: rfc822; alice.cpm@iwf.example.com
Arrival-Date: Thu, 26 Nov 2026 14:15:02 +0000 (UTC)

Final-Recipient: rfc822; nobody@example.net
Original-Recipient: rfc822;nobody@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx2.example.net
Diagnostic-Code: smtp; 550 5.1.1 <nobody@example.net>: Recipient address
    rejected: User unknown in virtual mailbox table

--4Zk9V0dSx5z9sWf.1764166504/mx.example.net
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers
Content-Transfer-Encoding: 8bit

Return-Path: <alice.cpm@iwf.example.com>
Received: from iwf.example.com (iwf.example.com [192.0.2.10])
	by mx.example.net (Postfix) with ESMTP id 4Zk9V0dSx5z9sWf
	for <nobody@example.net>; Thu, 26 Nov 2026 14:15:02 +0000 (UTC)
From: Alice via Chat <alice.cpm@iwf.example.com>
To: <nobody@example.net>
Subject: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:15:01 +0000
Message-ID: <{INV2}>
Auto-Submitted: auto-generated
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

--4Zk9V0dSx5z9sWf.1764166504/mx.example.net--
""", dsn_text.strip('\n'), f"""
kind = "bounce"
null_reverse_path = true
original_message_ids = ["{INV2}"]
status = "5.1.1"
action = "failed"
from = "MAILER-DAEMON@mx.example.net"
attachments = [
  {{ content_type = "message/delivery-status", size = 453 }},
  {{ content_type = "text/rfc822-headers", size = 511 }},
]
""")

# 18. An MDN (Thunderbird read receipt): multipart/report; report-type=disposition-notification.
write('mdn_thunderbird', f"""Message-ID: <1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b@navy.example.org>
Date: Thu, 26 Nov 2026 15:41:10 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
From: Grace Hopper <grace@navy.example.org>
Subject: Return Receipt (displayed) - Chat invitation from Alice
To: Alice via Chat <alice.cpm@iwf.example.com>
Content-Type: multipart/report; report-type=disposition-notification;
 boundary="------------5aB7cD9eF1gH3iJ5kL7mN9oP"

This is a multi-part message in MIME format.
--------------5aB7cD9eF1gH3iJ5kL7mN9oP
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 7bit

This is a Return Receipt for the mail that you sent to grace@navy.example.org.

Note: This Return Receipt only acknowledges that the message was displayed on the recipient's computer. There is no guarantee that the recipient has read or understood the message contents.

--------------5aB7cD9eF1gH3iJ5kL7mN9oP
Content-Type: message/disposition-notification; name="MDNPart2.txt"
Content-Disposition: inline
Content-Transfer-Encoding: 7bit

Reporting-UA: navy.example.org; Mozilla Thunderbird
Final-Recipient: rfc822;grace@navy.example.org
Original-Message-ID: <{INV}>
Disposition: manual-action/MDN-sent-manually; displayed

--------------5aB7cD9eF1gH3iJ5kL7mN9oP
Content-Type: text/rfc822-headers; name="MDNPart3.txt"
Content-Disposition: inline
Content-Transfer-Encoding: 7bit

From: Alice via Chat <alice.cpm@iwf.example.com>
To: Grace Hopper <grace@navy.example.org>
Subject: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:15:01 +0000
Message-ID: <{INV}>
Disposition-Notification-To: Alice via Chat <alice.cpm@iwf.example.com>

--------------5aB7cD9eF1gH3iJ5kL7mN9oP--
""", "This is a Return Receipt for the mail that you sent to grace@navy.example.org.\n\nNote: This Return Receipt only acknowledges that the message was displayed on the recipient's computer. There is no guarantee that the recipient has read or understood the message contents.", f"""
kind = "auto-generated"
report_type = "disposition-notification"
original_message_ids = ["{INV}"]
attachments = [
  {{ file_name = "MDNPart2.txt", content_type = "message/disposition-notification", size = 211 }},
  {{ file_name = "MDNPart3.txt", content_type = "text/rfc822-headers", size = 284 }},
]
""")

# 19. iPhone reply with a photo: multipart/mixed, text / image/jpeg inline / text.
jpeg = bytes.fromhex('ffd8ffe000104a46494600010101004800480000ffdb004300') + bytes(range(64)) + bytes.fromhex('ffc0000b080001000101011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffda0008010100003f00d2cf20ffd9')
write('iphone_photo_attachment', f"""Content-Type: multipart/mixed; boundary=Apple-Mail-7A6B5C4D-3E2F-4A1B-8C9D-0E1F2A3B4C5D
Content-Transfer-Encoding: 7bit
From: Henry Ford <henry.ford@me.com>
Mime-Version: 1.0 (1.0)
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 15:52:03 +0000
Message-Id: <A1B2C3D4-E5F6-4789-9ABC-DEF012345678@me.com>
References: <{INV}>
In-Reply-To: <{INV}>
To: Alice via Chat <alice.cpm@iwf.example.com>
X-Mailer: iPhone Mail (22B91)


--Apple-Mail-7A6B5C4D-3E2F-4A1B-8C9D-0E1F2A3B4C5D
Content-Type: text/plain;
	charset=us-ascii
Content-Transfer-Encoding: 7bit

Here is the whiteboard from this morning:

--Apple-Mail-7A6B5C4D-3E2F-4A1B-8C9D-0E1F2A3B4C5D
Content-Type: image/jpeg;
	name=IMG_0042.jpeg;
	x-apple-part-url=9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A-L0-001
Content-Disposition: inline;
	filename=IMG_0042.jpeg
Content-Transfer-Encoding: base64

{b64(jpeg)}
--Apple-Mail-7A6B5C4D-3E2F-4A1B-8C9D-0E1F2A3B4C5D
Content-Type: text/plain;
	charset=us-ascii
Content-Transfer-Encoding: 7bit



Sent from my iPhone

> On Nov 26, 2026, at 15:15, Alice via Chat <alice.cpm@iwf.example.com> wrote:
>=20
> {INVITE_TEXT.splitlines()[0]}
--Apple-Mail-7A6B5C4D-3E2F-4A1B-8C9D-0E1F2A3B4C5D--
""", "Here is the whiteboard from this morning:", f"""
attachments = [
  {{ file_name = "IMG_0042.jpeg", content_type = "image/jpeg", size = {len(jpeg)}, inline = true }},
]
""")

# 20. One-word answers in several clients' shapes.
# 20a. "Accept" from Outlook on the web, HTML only part of an alternative with empty plain? No:
# Outlook on the web sends alternative; the plain part says "Accept" above the underline.
plain = "Accept\n\n________________________________\nFrom: Alice via Chat <alice.cpm@iwf.example.com>\nSent: Thursday, November 26, 2026 14:15\nTo: Liam <liam@outlook.example.com>\nSubject: Chat invitation from Alice\n\n" + INVITE_TEXT + "\n"
html = """<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">
<style type="text/css" style="display:none;"> P {margin-top:0;margin-bottom:0;} </style>
</head>
<body dir="ltr">
<div class="elementToProof" style="font-family: Aptos, Aptos_EmbeddedFont, Aptos_MSFontService, Calibri, Helvetica, sans-serif; font-size: 12pt; color: rgb(0, 0, 0);">
Accept</div>
<div id="appendonsend"></div>
<hr style="display:inline-block;width:98%" tabindex="-1">
<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt" color="#000000"><b>From:</b> Alice via Chat &lt;alice.cpm@iwf.example.com&gt;<br>
<b>Sent:</b> Thursday, November 26, 2026 14:15<br>
<b>To:</b> Liam &lt;liam@outlook.example.com&gt;<br>
<b>Subject:</b> Chat invitation from Alice</font>
<div>&nbsp;</div>
</div>
<div>""" + INVITE_HTML + """</div>
</body>
</html>
"""
write('one_word_accept_outlook_web', f"""From: Liam <liam@outlook.example.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
Thread-Topic: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:16:55 +0000
Message-ID: <DB9PR03MB7340F0E1D2C3B4A5968778695A4B3@DB9PR03MB7340.eurprd03.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
Content-Language: en-GB
X-MS-Has-Attach:
Content-Type: multipart/alternative;
	boundary="_000_DB9PR03MB7340F0E1D2C3B4A5968778695A4B3DB9PR03MB7340eurp_"
MIME-Version: 1.0

{alternative('_000_DB9PR03MB7340F0E1D2C3B4A5968778695A4B3DB9PR03MB7340eurp_', plain, html, 'iso-8859-1', 'quoted-printable')}""", "Accept", None, crlf=True)

# 20b. "Accept" from the same client, HTML only (exercises appendonsend / divRplyFwdMsg).
write('one_word_accept_outlook_web_html', f"""From: Liam <liam@outlook.example.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:16:55 +0000
Message-ID: <DB9PR03MB7340A1B2C3D4E5F60718293A4B5C6@DB9PR03MB7340.eurprd03.prod.outlook.com>
In-Reply-To: <{INV}>
Content-Type: text/html; charset="iso-8859-1"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(html, 'latin-1')}""", "Accept", """
body_source = "html"
""", crlf=True)

# 20c. "yes" from an iPhone (plain only, as iOS sends a short reply with no HTML).
write('one_word_yes_iphone', f"""Content-Type: text/plain;
	charset=us-ascii
Content-Transfer-Encoding: 7bit
From: Mia Wong <mia.wong@icloud.com>
Mime-Version: 1.0 (1.0)
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:17:40 +0000
Message-Id: <0F1E2D3C-4B5A-4697-8877-665544332211@icloud.com>
References: <{INV}>
In-Reply-To: <{INV}>
To: Alice via Chat <alice.cpm@iwf.example.com>
X-Mailer: iPhone Mail (22B91)

yes

Sent from my iPhone

> On 26 Nov 2026, at 14:15, Alice via Chat <alice.cpm@iwf.example.com> wrote:
>=20
{QUOTED}
""".replace('>=20', '>'), "yes")

# 20d. "ok" from Gmail (web, plain + HTML).
plain = "ok\n\nOn Thu, Nov 26, 2026 at 2:15\u202fPM Alice via Chat <alice.cpm@iwf.example.com> wrote:\n\n" + QUOTED + "\n"
html = """<div dir="ltr">ok</div><br><div class="gmail_quote gmail_quote_container"><div dir="ltr" class="gmail_attr">On Thu, Nov 26, 2026 at 2:15\u202fPM Alice via Chat &lt;<a href="mailto:alice.cpm@iwf.example.com">alice.cpm@iwf.example.com</a>&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">""" + INVITE_HTML + """</blockquote></div>
"""
write('one_word_ok_gmail', hdr(('Noah Kim', 'noah.kim@gmail.com'), 'Re: Chat invitation from Alice', 'Thu, 26 Nov 2026 14:18:02 +0000', 'CAJ4t5u6v7w8x9y0z1a2b3c4@mail.gmail.com') + gmail_alternative('000000000000f2a3b4c50627a8b9f4', plain, html, 'quoted-printable'), "ok")

# 20e. "Accept" from Thunderbird, format=flowed with delsp and a signature.
write('one_word_accept_thunderbird', f"""Message-ID: <0a1b2c3d-4e5f-4607-8899-aabbccddeeff@navy.example.org>
Date: Thu, 26 Nov 2026 14:19:30 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Subject: Re: Chat invitation from Alice
To: Alice via Chat <alice.cpm@iwf.example.com>
References: <{INV}>
From: Grace Hopper <grace@navy.example.org>
In-Reply-To: <{INV}>
Content-Type: text/plain; charset=UTF-8; format=flowed; delsp=yes
Content-Transfer-Encoding: 7bit

Accept

On 26/11/2026 14:15, Alice via Chat wrote:
{QUOTED}

-- 
Grace Hopper
""", "Accept", """
body_source = "flowed-plain"
""")

# 21. mutt, inline (interleaved) answers under the attribution, and a signature.
write('mutt_inline_reply', f"""Date: Thu, 26 Nov 2026 14:40:02 +0000
From: Kate Bush <kate@heights.example.co.uk>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: Re: Chat invitation from Alice
Message-ID: <20261126144002.zy9xw8vu7ts6@heights.example.co.uk>
References: <{INV}>
In-Reply-To: <{INV}>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Disposition: inline
Content-Transfer-Encoding: 8bit
User-Agent: Mutt/2.2.13 (2024-03-09)

On Thu, Nov 26, 2026 at 02:15:01PM +0000, Alice via Chat wrote:
> Alice invites you to a chat.

Happy to.

> Hi Bob, do you have a minute?

Two, even. Go ahead.

-- 
Kate Bush
""", "Happy to.\n\nTwo, even. Go ahead.")

# 22. Outlook desktop in German, plain only, windows-1252 QP: "Von:/Gesendet:/An:/Betreff:".
plain = """Passt, ich bin dabei. Gr\u00fc\u00dfe aus K\u00f6ln \u2013 Lena

Von: Alice via Chat <alice.cpm@iwf.example.com>
Gesendet: Donnerstag, 26. November 2026 14:15
An: Lena Vogel <lena.vogel@firma.example.de>
Betreff: Chat invitation from Alice

""" + INVITE_TEXT + "\n"
write('outlook_german', f"""From: Lena Vogel <lena.vogel@firma.example.de>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: AW: Chat invitation from Alice
Thread-Topic: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:44:10 +0000
Message-ID: <FR3P281MB1234A5B6C7D8E9F0A1B2C3D4E5F6@FR3P281MB1234.DEUP281.PROD.OUTLOOK.COM>
References: <{INV}>
In-Reply-To: <{INV}>
Accept-Language: de-DE
Content-Language: de-DE
Content-Type: text/plain; charset="Windows-1252"
Content-Transfer-Encoding: quoted-printable
MIME-Version: 1.0

{qp(plain, 'cp1252')}""", "Passt, ich bin dabei. Gr\u00fc\u00dfe aus K\u00f6ln \u2013 Lena", None, crlf=True)

# 23. Exchange Online NDR: multipart/report with a multipart/alternative notice,
# message/delivery-status and the whole invitation as message/rfc822.
ndr_text = """Your message to nobody@contoso.com couldn't be delivered.
nobody wasn't found at contoso.com.

Alice via Chat      Office 365      nobody
Action Required                     Recipient

Unknown To address
"""
ndr_html = "<html><body><p>Your message to <a href=\"mailto:nobody@contoso.com\">nobody@contoso.com</a> couldn't be delivered.</p></body></html>"
original = f"""From: Alice via Chat <alice.cpm@iwf.example.com>
To: <nobody@contoso.com>
Subject: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:15:01 +0000
Message-ID: <{INV2}>
Auto-Submitted: auto-generated
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

{INVITE_TEXT}
"""
write('exchange_ndr', f"""From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>
To: <alice.cpm@iwf.example.com>
Date: Thu, 26 Nov 2026 14:15:09 +0000
Content-Type: multipart/report; report-type=delivery-status;
	boundary="5e7a1c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f@AM6PR05MB5926.eurprd05.prod.outlook.com>
In-Reply-To: <{INV2}>
References: <{INV2}>
Subject: Undeliverable: Chat invitation from Alice
Auto-Submitted: auto-replied
MIME-Version: 1.0

--5e7a1c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: multipart/alternative; differences=Content-Type;
	boundary="8f9e0d1c-2b3a-4958-a7b6-c5d4e3f2a1b0"

{alternative('8f9e0d1c-2b3a-4958-a7b6-c5d4e3f2a1b0', ndr_text, ndr_html, 'us-ascii', 'quoted-printable')}
--5e7a1c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: message/delivery-status

Reporting-MTA: dns;AM6PR05MB5926.eurprd05.prod.outlook.com
Received-From-MTA: dns;mx.iwf.example.com
Arrival-Date: Thu, 26 Nov 2026 14:15:03 +0000

Final-Recipient: rfc822;nobody@contoso.com
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not
 found by SMTP address lookup

--5e7a1c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: message/rfc822

{original}
--5e7a1c2b-3d4f-4a5b-8c6d-7e8f9a0b1c2d--
""", ndr_text.strip('\n'), f"""
kind = "bounce"
original_message_ids = ["{INV2}"]
status = "5.1.10"
action = "failed"
in_reply_to = ["{INV2}"]
attachments = [
  {{ content_type = "message/delivery-status", size = 339 }},
  {{ content_type = "message/rfc822", size = 413 }},
]
""", crlf=True)

# 24. A personal reply sent through an Exchange-based app that asks for no auto-replies
# (X-Auto-Response-Suppress): the header alone does not make it automatic.
write('exchange_personal_with_suppress', f"""From: Carol Smith <carol.smith@contoso.com>
To: Alice via Chat <alice.cpm@iwf.example.com>
Subject: RE: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:50:03 +0000
Message-ID: <AM6PR05MB5926F3E2D1C0B9A8F7E6D5C4B3A29@AM6PR05MB5926.eurprd05.prod.outlook.com>
References: <{INV}>
In-Reply-To: <{INV}>
X-Auto-Response-Suppress: DR, OOF, AutoReply
Content-Language: en-US
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: 7bit
MIME-Version: 1.0

Sorry, I can't today. Maybe tomorrow?

Carol

-----Original Message-----
From: Alice via Chat <alice.cpm@iwf.example.com>
Sent: Thursday, November 26, 2026 2:15 PM
To: Carol Smith <carol.smith@contoso.com>
Subject: Chat invitation from Alice

{INVITE_TEXT}
""", "Sorry, I can't today. Maybe tomorrow?\n\nCarol", None, crlf=True)

# 25. iPhone: the user pressed Send without typing: only the footer and the quote.
# Never emptied: the whole text comes back with fell_back, so the caller knows the
# words in it (even "leave" from the quoted instructions) are not the user's.
plain = "\n\nSent from my iPhone\n\n> On 26 Nov 2026, at 14:15, Alice via Chat <alice.cpm@iwf.example.com> wrote:\n>\n" + QUOTED + "\n"
write('iphone_empty_reply', f"""Content-Type: text/plain;
	charset=us-ascii
Content-Transfer-Encoding: 7bit
From: Mia Wong <mia.wong@icloud.com>
Mime-Version: 1.0 (1.0)
Subject: Re: Chat invitation from Alice
Date: Thu, 26 Nov 2026 14:58:40 +0000
Message-Id: <5A4B3C2D-1E0F-4A9B-8C7D-6E5F4A3B2C1D@icloud.com>
References: <{INV}>
In-Reply-To: <{INV}>
To: Alice via Chat <alice.cpm@iwf.example.com>
X-Mailer: iPhone Mail (22B91)

{plain}""", plain.strip('\n'), """
fell_back = true
""")
