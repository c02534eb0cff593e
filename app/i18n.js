// Interface strings and locale-aware formatting for the field app.
// Arabic is the default language (right to left); French and English follow.
export const LANGS = ["ar", "fr", "en"];

const LOCALES = { ar: "ar-MA", fr: "fr-FR", en: "en-GB" };

export const STRINGS = {
  ar: {
    club: "نادي السمارة الدولي للمدن المتوأمة",
    signin: "افتح رابط الدعوة الذي أرسله إليك أحد المنسقين لتسجيل الدخول على هذا الجهاز.",
    signinFailed: "تعذر تسجيل الدخول: ",
    inviteUnknown: "رابط الدعوة هذا غير صالح: تأكد من نسخه كاملا، أو اطلب من منسق رابطا جديدا.",
    inviteSpent: "رابط الدعوة هذا استُعمل من قبل أو انتهت صلاحيته: اطلب من منسق رابطا جديدا.",
    inviteTooMany: "محاولات تسجيل دخول كثيرة من هذه الشبكة: انتظر دقيقة ثم أعد تحميل الصفحة.",
    signinServer: "لم يتمكن خادم النادي من إتمام تسجيل الدخول: أعد تحميل الصفحة بعد قليل.",
    syncingNow: "جارٍ مزامنة السجلات",
    removeConfirm: "إزالة «{item}» وكل ما كُتب فيه؟ يبقى في سجل تعديلات السجل.",
    changedMeanwhile: "أثناء كتابتك، كان جهاز آخر قد غيّر هذه القيمة إلى:",
    keepTheirs: "الإبقاء على قيمته",
    "problem.storage-full": "لم يُحفظ على هذا الهاتف: مساحة التخزين ممتلئة. أفرغ بعض المساحة، وإلى ذلك الحين ابقَ متصلا بالشبكة وهذه الصفحة مفتوحة: الخادم يحتفظ بتعديلاتك.",
    "problem.not-saved": "لم يُحفظ على هذا الهاتف: تعذّر التخزين. ابقَ متصلا بالشبكة وهذه الصفحة مفتوحة: الخادم يحتفظ بتعديلاتك.",
    "problem.other": "حدث خطأ غير متوقع.",
    invalidMark: "يتضمن هذا السجل أخطاء",
    "problem.damaged": "بعض البيانات على هذا الهاتف كانت تالفة؛ حُفظ ما أمكن قراءته، والباقي يعود من الخادم.",
    "problem.protocol": "أرسل الخادم شيئا لا يستطيع التطبيق قراءته؛ سيعاود المحاولة.",
    "problem.server": "أبلغ الخادم عن مشكلة في سجلات هذا الهاتف أو تعديلاته.",
    "problem.EditError": "لا يمكن إجراء هذا التعديل",
    "problem.NotFoundError": "هذا السجل ليس على هذا الهاتف بعد",
    "problem.CorruptError": "هذا السجل تالف على هذا الهاتف",
    "problem.QuotaExceededError": "لم يُحفظ على هذا الهاتف: مساحة التخزين ممتلئة. أفرغ بعض المساحة، وإلى ذلك الحين ابقَ متصلا بالشبكة وهذه الصفحة مفتوحة: الخادم يحتفظ بتعديلاتك.",
    "problem.StorageError": "لم يُحفظ على هذا الهاتف: تعذّر التخزين. ابقَ متصلا بالشبكة وهذه الصفحة مفتوحة: الخادم يحتفظ بتعديلاتك.",
    signinUnreached: "لم يُجب خادم النادي. اتصل بشبكة ثم أعد تحميل هذه الصفحة لتسجيل الدخول.",
    records: "السجلات", dashboard: "لوحة القيادة", search: "بحث", searchPlaceholder: "ابحث في السجلات…",
    noResults: "لا يوجد أي سجل مطابق.", new: "جديد", newRecord: "إضافة {kind}", create: "إنشاء", save: "حفظ",
    cancel: "إلغاء", back: "رجوع", remove: "إزالة", add: "إضافة", addItem: "إضافة عنصر", markDone: "تحديد كمنجز",
    done: "منجز", required: "إلزامي", none: "—", yes: "نعم", no: "لا",
    history: "سجل التعديلات", asOf: "السجل كما كان بتاريخ", show: "عرض", current: "العودة إلى السجل الحالي",
    notYet: "لم يكن هذا السجل موجودا بعد في ذلك التاريخ.",
    conflicts: "الاختلافات",
    conflictHelp: "أدخل مندوبان قيمتين مختلفتين أثناء العمل دون اتصال. اختر القيمة التي تريد الاحتفاظ بها.",
    keep: "الاحتفاظ بهذه القيمة", noConflicts: "لا يوجد أي اختلاف يستدعي الحسم.", resolved: "تم الحسم",
    export: "تصدير", exportJson: "جميع السجلات (JSON)", exportCsv: "{kind} (CSV)", exportId: "المعرّف", delegateNeedsCity: "ينتمي المندوب إلى مدينة واحدة على الأقل من مدن النادي: اختر مدينة.",
    agreementsByStatus: "الاتفاقيات حسب الحالة", projectsByCity: "المشاريع حسب المدينة",
    overdueMilestones: "مراحل تجاوزت أجلها", recentChanges: "آخر التعديلات",
    who: "من", when: "متى", what: "ما الذي تغير", unknownAuthor: "جهاز غير معروف", thisRecord: "السجل",
    offline: "غير متصل", connecting: "جارٍ الاتصال…", syncing: "جارٍ مزامنة السجلات ({n})", upToDate: "البيانات محينة",
    syncError: "خطأ في المزامنة: {reason}", signedOut: "لم يعد الخادم يقبل تسجيل دخول هذا الجهاز. تعديلاتك محفوظة على الهاتف؛ اطلب من منسق رابط دعوة جديدا.", waiting: "تعديلات في انتظار الإرسال إلى الخادم: {n}", deferred: "سجلات تنتظر دورها، إذ يقبل الخادم من كل هاتف عددا محدودا منها في الدقيقة: {n}",
    refused: "رفض الخادم أحد التعديلات: {reason}", goOnline: "الاتصال بالشبكة", goOffline: "العمل دون اتصال",
    refusedChange: "لم يقبل الخادم تعديلك على «{field}» في {record}: {why} {kept}",
    refusedRecord: "لم يقبل الخادم تعديلك على {record}: {why} {kept}",
    refusalKept: "يبقى التعديل على هذا الهاتف، ويمكن لأحد المنسقين مراجعته (رقم {n}).",
    refusalNotKept: "يبقى التعديل على هذا الهاتف.",
    refusalAt: "{field}: {why}",
    reviewChanges: "ما الذي سيغيّره", notShown: "لا يمكن عرض التعديلات: {reason}", valueNow: "حاليا:", valueProposed: "مع هذا التعديل:",
    "refusal.invalid": "لن يبقى السجل صالحا بعده.",
    "refusal.too-deep": "القيم فيه متداخلة إلى عمق يتجاوز ما يقبله الخادم.",
    "refusal.revoked": "أُلغي الجهاز.",
    "refusal.observer": "جهاز الملاحظ لا يعدّل شيئا.",
    "refusal.kind-changed": "لا يمكن تغيير نوع السجل.",
    "refusal.unknown-kind": "لا يكتب سجلا لا يحدد نوعه إلا المنسقون.",
    "refusal.adopted": "اعتُمد المحضر، ولا يعدّله إلا المنسقون.",
    "refusal.ended": "انتهت الاتفاقية، ولا يعدّلها إلا المنسقون.",
    "refusal.not-yours": "لا يعدّل المندوبون إلا سجلات مدنهم والاجتماعات التي يحضرونها والتقارير التي حرروها.",
    "refusal.club-created": "لا ينشئ سجل النادي إلا المنسقون.",
    "refusal.club-beyond-index": "في سجل النادي، لا يمكن للمندوبين إلا إضافة مداخل الفهرس أو تحديثها.",
    "refusal.club-index-removed": "لا يحذف سجلا من فهرس النادي إلا المنسقون.",
    "refusal.too-large": "بلغ السجل أقصى حجم يحتفظ به الخادم.",
    "refusal.not-stored": "تعذّر على الخادم حفظه الآن (تخزينه معطّل أو ممتلئ)، وسيُرسل من جديد عند إعادة اتصال الهاتف.",
    "refusal.unreadable": "لا يستطيع الخادم الآن قراءة نسخته من هذا السجل؛ أخبر أحد المنسقين.",
    "refusal.rate-limited": "يقبل الخادم من كل هاتف عددا محدودا من السجلات في الدقيقة، وسيُرسل من جديد بعد قليل.",
    "api.database-unavailable": "قاعدة بيانات الخادم لا تستجيب الآن؛ أعد المحاولة بعد قليل.",
    "api.record-unreadable": "الخادم لا يستطيع قراءة نسخته من هذا السجل.",
    "api.not-coordinator": "لم يعد هذا الجهاز جهاز منسق.",
    "api.revoked": "أُلغي هذا الجهاز؛ لا يمكنه إلا تسليم تعديلاته غير المتزامنة.",
    "api.no-batch": "هذه الدفعة لم تعد في قائمة التعديلات المرفوضة.",
    "api.batch-decided": "سبق أن بتّ منسق آخر في هذه الدفعة؛ حُدّثت القائمة.",
    "api.batch-not-applicable": "قبول هذه الدفعة يترك السجل غير صالح، فلا يمكن قبولها؛ تجاهلها أو اطلب من المندوب كتابتها من جديد.",
    "api.record-busy": "السجل مشغول الآن؛ أعد المحاولة.",
    "api.unknown-device": "هذا الجهاز لم يعد مسجلا على الخادم.",
    "api.device-revoked": "لا يمكن تعديل جهاز ملغى؛ ادعُ صاحبه من جديد.",
    "api.last-coordinator": "هذا آخر جهاز منسق ما زال يعمل: اجعل جهازا آخر منسقا أولا، وإلا فلن يستطيع أحد إدارة الأجهزة.",
    "api.changed-meanwhile": "تغيّر الجهاز في هذه الأثناء؛ أعد المحاولة.",
    recordUnreadable: "لا تمكن مزامنة {record} الآن: لا يستطيع الخادم قراءة نسخته منه. تبقى تعديلاتك على هذا الهاتف؛ أخبر أحد المنسقين.",
    "invalid.not-a-record": "ليس سجلا من سجلات twinsync",
    "invalid.newer-schema": "كُتب بإصدار أحدث من twinsync (حدّث التطبيق)",
    "invalid.unknown-kind": "نوع سجل لا يعرفه هذا الإصدار من التطبيق",
    "invalid.missing": "قيمة إلزامية مفقودة",
    "invalid.wrong-type": "يحمل قيمة من نوع غير صحيح",
    "invalid.not-a-date": "ليس تاريخا",
    "invalid.not-an-option": "ليس من القيم المسموح بها",
    "invalid.not-a-link": "ليس رابطا إلى سجل",
    "invalid.out-of-range": "ليس عددا صحيحا ضمن الحدود المسموح بها",
    "invalid.not-a-language": "لغة غير العربية والفرنسية والإنجليزية",
    "invalid.duplicate-id": "عنصران يشتركان في معرّف واحد",
    invalid: "يتضمن هذا السجل أخطاء: {reason}", listSeparator: "؛ ", unreadable: "لا يمكن عرض هذا السجل كنموذج في هذا الإصدار من التطبيق: يظهر كما هو محفوظ ولا يمكن تعديله هنا. حدّث التطبيق أو اتصل بمنسق.", savedOnDevice: "تم الحفظ على هذا الجهاز",
    signedInAs: "متصل باسم {name} ({role})", devices: "الأجهزة", inviteTitle: "دعوة جهاز جديد", deviceName: "اسم الجهاز", role: "الدور", cities: "المدن", person: "الشخص", noPerson: "لا أحد", createInvite: "إنشاء الدعوة", inviteLink: "رابط الدعوة (يُستعمل مرة واحدة، صالح حتى {until}):", copy: "نسخ", copied: "تم النسخ", deviceList: "الأجهزة المسجلة", lastSeen: "آخر ظهور", never: "أبدا", refresh: "تحديث", status: "الحالة", revokedOn: "أُلغي في {when}", revoke: "إلغاء الجهاز", editDevice: "تعديل", addLink: "ربط سجل…", notOnPhone: "سجل لم يصل إلى هذا الهاتف بعد", shownAsOf: "تعذر الوصول إلى الخادم: القوائم كما كانت في {when}.", saveDevice: "حفظ التعديلات", revokeConfirm: "إلغاء الجهاز «{name}»؟ يُقطع اتصاله فورا، ويمكنه تسليم تعديلاته غير المتزامنة للمراجعة.", thisDevice: "هذا الجهاز", quarantineTitle: "تعديلات مرفوضة تنتظر المراجعة", quarantineEmpty: "لا توجد تعديلات مرفوضة تنتظر المراجعة.", changesCount: "{n} تعديل", "changesCount.one": "تعديل واحد", "changesCount.two": "تعديلان", "changesCount.few": "{n} تعديلات", "changesCount.many": "{n} تعديلا", accept: "قبول", discard: "تجاهل", coordinatorsOnly: "هذه الصفحة للمنسقين.", requestFailed: "لم ينجح الطلب: {reason}", requestUnreached: "لم يُجب خادم النادي؛ تحقّق من الاتصال وأعد المحاولة.", coordinator: "منسق", delegate: "مندوب", observer: "ملاحظ",
    language: "اللغة", byServer: "الخادم (البيانات الأولية)", byThisDevice: "هذا الجهاز (لم يُرسل بعد)",
    discardDraft: "مغادرة هذه الاستمارة؟ ما كتبته في السجل الجديد لم يُحفظ بعد.",
    draftRestored: "الاستمارة كما تركتها على هذا الهاتف، ولم يُنشأ السجل بعد.",
    startAgain: "البدء من جديد",
    readOnly: "يمكنك الاطلاع على هذا السجل دون تعديله.", lockedAdopted: "اعتُمد هذا المحضر: لا يعدّله إلا المنسقون.", lockedEnded: "انتهت هذه الاتفاقية: لا يعدّلها إلا المنسقون.", lockedNotOurs: "هذا السجل لا يخص مدنك: لا يعدّله إلا مندوبو مدنه والمنسقون.", due: "آخر أجل {date}",
    city: "المدينة", count: "العدد", noCity: "بدون مدينة",
    storageError: "تعذرت قراءة البيانات المخزنة على هذا الجهاز: {reason}. أعد تحميل الصفحة لجلبها من جديد من الخادم.",

    "kind.club": "النادي", "kind.city": "مدينة", "kind.agreement": "اتفاقية", "kind.project": "مشروع",
    "kind.meeting": "اجتماع", "kind.person": "شخص", "kind.report": "تقرير",
    "kinds.club": "النادي", "kinds.city": "المدن", "kinds.agreement": "الاتفاقيات", "kinds.project": "المشاريع",
    "kinds.meeting": "الاجتماعات", "kinds.person": "الأشخاص", "kinds.report": "التقارير",

    "field.name": "الاسم", "field.title": "العنوان", "field.founded_on": "تاريخ التأسيس", "field.seat": "المقر",
    "field.purpose": "الغاية", "field.council": "مجلس التنسيق", "field.index": "فهرس السجلات", "field.person": "الشخص",
    "field.role": "الدور", "field.city": "المدينة", "field.since": "منذ", "field.country": "البلد",
    "field.country_code": "رمز البلد", "field.region": "الجهة", "field.representative": "الممثل",
    "field.representative_title": "صفة الممثل", "field.twinning_status": "وضعية التوأمة",
    "field.contacts": "وسائل الاتصال", "field.notes": "ملاحظات", "field.kind": "النوع", "field.value": "القيمة",
    "field.label": "التسمية", "field.parties": "الأطراف", "field.domains": "مجالات التعاون",
    "field.approved_on": "تاريخ المصادقة", "field.signed_on": "تاريخ التوقيع",
    "field.in_force_from": "تاريخ دخول حيز التنفيذ", "field.ends_on": "تاريخ الانتهاء", "field.status": "الحالة",
    "field.commitments": "الالتزامات", "field.text": "النص", "field.party": "الطرف", "field.due": "الأجل",
    "field.agreement": "الاتفاقية", "field.domain": "المجال", "field.owner_city": "المدينة المسؤولة",
    "field.starts_on": "تاريخ الانطلاق", "field.budget_note": "ملاحظة حول الميزانية", "field.objectives": "الأهداف",
    "field.milestones": "المراحل", "field.progress_notes": "ملاحظات حول تقدم الإنجاز", "field.owner": "المسؤول",
    "field.done_on": "تاريخ الإنجاز", "field.date": "التاريخ", "field.author": "المحرر", "field.time": "الساعة",
    "field.place": "المكان", "field.chair": "رئيس الجلسة", "field.attendees": "الحاضرون", "field.guests": "الضيوف",
    "field.agenda": "جدول الأعمال", "field.minutes": "المحضر", "field.decisions": "القرارات", "field.adopted": "معتمد",
    "field.presenter": "مقدم العرض", "field.outcome": "النتيجة", "field.roles": "الأدوار", "field.organisation": "الهيئة",
    "field.report_type": "نوع التقرير", "field.links": "الروابط", "field.archived": "مؤرشف",

    "value.prospect": "قيد الاستكشاف", "value.approved": "تمت المصادقة", "value.signed": "تم التوقيع",
    "value.active": "نشط", "value.suspended": "معلق", "value.ended": "منتهٍ", "value.draft": "مسودة",
    "value.in_force": "ساري المفعول", "value.planned": "مبرمج", "value.on_hold": "متوقف مؤقتا", "value.done": "منجز",
    "value.cancelled": "ملغى", "value.pending": "في الانتظار", "value.in_progress": "قيد الإنجاز", "value.open": "مفتوح",
    "value.dropped": "تم التخلي عنه", "value.adopted": "معتمد", "value.rejected": "مرفوض", "value.deferred": "مؤجل",
    "value.visit": "زيارة", "value.field": "عمل ميداني", "value.progress": "تتبع الإنجاز", "value.other": "أخرى",
    "value.phone": "الهاتف", "value.email": "البريد الإلكتروني", "value.address": "العنوان", "value.web": "الموقع الإلكتروني",
    "value.economic": "الاقتصاد", "value.cultural": "الثقافة", "value.scientific": "البحث العلمي", "value.environmental": "البيئة",
    "value.governance": "الحكامة", "value.youth": "الشباب", "value.sustainable_development": "التنمية المستدامة",
    "value.health": "الصحة", "value.education": "التعليم",
    "value.city": "مدينة", "value.agreement": "اتفاقية", "value.project": "مشروع", "value.meeting": "اجتماع",
    "value.person": "شخص", "value.report": "تقرير",
  },

  fr: {
    club: "Club international de Smara des villes jumelées",
    signin: "Ouvrez le lien d'invitation qu'un coordinateur vous a envoyé pour connecter cet appareil.",
    signinFailed: "Connexion impossible : ",
    inviteUnknown: "Ce lien d’invitation n’est pas valable : vérifiez qu’il a été copié en entier, ou demandez-en un nouveau à un coordinateur.",
    inviteSpent: "Ce lien d’invitation a déjà servi ou a expiré : demandez-en un nouveau à un coordinateur.",
    inviteTooMany: "Trop de tentatives de connexion depuis ce réseau : attendez une minute puis rechargez la page.",
    signinServer: "Le serveur du club n’a pas pu terminer la connexion : rechargez la page dans un moment.",
    syncingNow: "Synchronisation des fiches",
    removeConfirm: "Retirer « {item} » et tout ce qui y est écrit ? Cela reste dans l’historique de la fiche.",
    changedMeanwhile: "Pendant votre saisie, un autre appareil y avait mis :",
    keepTheirs: "Garder la sienne",
    "problem.storage-full": "Non enregistré sur ce téléphone : son stockage est plein. Libérez de la place ; en attendant, restez en ligne avec cette page ouverte : le serveur garde vos modifications.",
    "problem.not-saved": "Non enregistré sur ce téléphone : son stockage a échoué. Restez en ligne avec cette page ouverte : le serveur garde vos modifications.",
    "problem.other": "Une erreur inattendue s’est produite.",
    invalidMark: "Cette fiche comporte des erreurs",
    "problem.damaged": "Des données de ce téléphone étaient endommagées ; ce qui a pu être lu est gardé, le reste revient du serveur.",
    "problem.protocol": "Le serveur a envoyé un message que l’application ne sait pas lire ; elle réessaiera.",
    "problem.server": "Le serveur a signalé un problème avec les fiches ou les modifications de ce téléphone.",
    "problem.EditError": "Cette modification n’est pas possible",
    "problem.NotFoundError": "Cette fiche n’est pas encore sur ce téléphone",
    "problem.CorruptError": "Cette fiche est endommagée sur ce téléphone",
    "problem.QuotaExceededError": "Non enregistré sur ce téléphone : son stockage est plein. Libérez de la place ; en attendant, restez en ligne avec cette page ouverte : le serveur garde vos modifications.",
    "problem.StorageError": "Non enregistré sur ce téléphone : son stockage a échoué. Restez en ligne avec cette page ouverte : le serveur garde vos modifications.",
    signinUnreached: "le serveur du club n’a pas répondu. Connectez-vous au réseau puis rechargez cette page pour vous connecter.",
    records: "Fiches", dashboard: "Tableau de bord", search: "Rechercher", searchPlaceholder: "Rechercher dans les fiches…",
    noResults: "Aucune fiche ne correspond.", new: "Nouveau", newRecord: "Nouvelle fiche : {kind}", create: "Créer",
    save: "Enregistrer", cancel: "Annuler", back: "Retour", remove: "Retirer", add: "Ajouter", addItem: "Ajouter un élément",
    markDone: "Marquer comme réalisé", done: "Réalisé", required: "obligatoire", none: "—", yes: "Oui", no: "Non",
    history: "Historique", asOf: "La fiche telle qu'elle était le", show: "Afficher", current: "Revenir à la fiche actuelle",
    notYet: "La fiche n'existait pas encore à cette date.",
    conflicts: "Désaccords",
    conflictHelp: "Deux délégués ont saisi des valeurs différentes hors ligne. Choisissez celle à conserver.",
    keep: "Conserver celle-ci", noConflicts: "Aucun désaccord à résoudre.", resolved: "Résolu",
    export: "Exporter", exportJson: "Toutes les fiches (JSON)", exportCsv: "{kind} (CSV)", exportId: "Identifiant", delegateNeedsCity: "Un délégué appartient à au moins une ville membre : cochez-en une.",
    agreementsByStatus: "Accords par statut", projectsByCity: "Projets par ville",
    overdueMilestones: "Jalons en retard", recentChanges: "Modifications récentes",
    who: "Qui", when: "Quand", what: "Ce qui a changé", unknownAuthor: "appareil inconnu", thisRecord: "Fiche",
    offline: "Hors ligne", connecting: "Connexion…", syncing: "Synchronisation de {n} fiches", "syncing.one": "Synchronisation de {n} fiche", upToDate: "À jour",
    syncError: "Erreur de synchronisation : {reason}", signedOut: "Le serveur n’accepte plus la connexion de cet appareil. Vos modifications restent sur le téléphone ; demandez un nouveau lien d’invitation à un coordinateur.", waiting: "{n} modifications en attente du serveur", "waiting.one": "{n} modification en attente du serveur", deferred: "{n} fiches attendent leur tour : le serveur n’en prend qu’un nombre limité par minute à un même téléphone", "deferred.one": "{n} fiche attend son tour : le serveur n’en prend qu’un nombre limité par minute à un même téléphone",
    refused: "Le serveur a refusé une modification : {reason}", goOnline: "Passer en ligne", goOffline: "Travailler hors ligne",
    refusedChange: "Le serveur n’a pas accepté votre modification du champ « {field} » dans la fiche {record} : {why} {kept}",
    refusedRecord: "Le serveur n’a pas accepté votre modification de la fiche {record} : {why} {kept}",
    refusalKept: "Elle reste sur ce téléphone, et un coordinateur peut l’examiner (n° {n}).",
    refusalNotKept: "Elle reste sur ce téléphone.",
    refusalAt: "{field} : {why}",
    reviewChanges: "Ce que cela changerait", notShown: "Les modifications ne peuvent pas être montrées : {reason}", valueNow: "Actuellement :", valueProposed: "Avec cette modification :",
    "refusal.invalid": "la fiche ne serait plus valable.",
    "refusal.too-deep": "ses valeurs sont imbriquées plus profondément que le serveur ne l’accepte.",
    "refusal.revoked": "l’appareil a été révoqué.",
    "refusal.observer": "l’appareil d’un observateur ne modifie rien.",
    "refusal.kind-changed": "le type d’une fiche ne peut pas changer.",
    "refusal.unknown-kind": "seuls les coordinateurs peuvent écrire une fiche qui n’indique pas son type.",
    "refusal.adopted": "le procès-verbal a été adopté, et seuls les coordinateurs peuvent le modifier.",
    "refusal.ended": "l’accord a pris fin, et seuls les coordinateurs peuvent le modifier.",
    "refusal.not-yours": "les délégués ne modifient que les fiches de leurs villes, les réunions auxquelles ils assistent et les rapports qu’ils ont écrits.",
    "refusal.club-created": "seuls les coordinateurs peuvent créer la fiche du club.",
    "refusal.club-beyond-index": "dans la fiche du club, les délégués peuvent seulement ajouter ou mettre à jour des entrées de l’index.",
    "refusal.club-index-removed": "seuls les coordinateurs peuvent retirer une fiche de l’index du club.",
    "refusal.too-large": "la fiche a atteint la plus grande taille que le serveur conserve.",
    "refusal.not-stored": "le serveur n’a pas pu l’enregistrer pour l’instant (son stockage est défaillant ou plein) ; elle sera renvoyée quand le téléphone se reconnectera.",
    "refusal.unreadable": "le serveur ne parvient pas à lire sa copie de cette fiche pour l’instant ; prévenez un coordinateur.",
    "refusal.rate-limited": "le serveur ne prend qu’un nombre limité de fiches par minute à un même téléphone ; elle sera renvoyée d’ici peu.",
    "api.database-unavailable": "la base de données du serveur ne répond pas pour l’instant ; réessayez dans un moment.",
    "api.record-unreadable": "le serveur ne parvient pas à lire sa copie de cette fiche.",
    "api.not-coordinator": "cet appareil n’est plus celui d’un coordinateur.",
    "api.revoked": "cet appareil a été révoqué ; il ne peut plus que remettre ses modifications non synchronisées.",
    "api.no-batch": "ce lot n’est plus parmi les modifications refusées.",
    "api.batch-decided": "un autre coordinateur a déjà tranché sur ce lot ; la liste est à jour.",
    "api.batch-not-applicable": "accepter ce lot laisserait la fiche invalide : il ne peut pas être accepté. Écartez-le, ou demandez au délégué de le réécrire.",
    "api.record-busy": "la fiche est occupée pour l’instant ; réessayez.",
    "api.unknown-device": "cet appareil n’est plus enregistré sur le serveur.",
    "api.device-revoked": "un appareil révoqué ne peut pas être modifié ; invitez de nouveau son détenteur.",
    "api.last-coordinator": "c’est le dernier appareil de coordinateur encore valide : faites d’abord d’un autre appareil un coordinateur, sinon personne ne pourrait plus gérer les appareils.",
    "api.changed-meanwhile": "l’appareil a été modifié entre-temps ; réessayez.",
    recordUnreadable: "La fiche {record} ne peut pas être synchronisée pour l’instant : le serveur ne parvient pas à lire sa copie. Vos modifications restent sur ce téléphone ; prévenez un coordinateur.",
    "invalid.not-a-record": "ce n’est pas une fiche twinsync",
    "invalid.newer-schema": "écrite par une version plus récente de twinsync (mettez l’application à jour)",
    "invalid.unknown-kind": "un type de fiche que cette version de l’application ne connaît pas",
    "invalid.missing": "valeur obligatoire manquante",
    "invalid.wrong-type": "contient une valeur du mauvais type",
    "invalid.not-a-date": "n’est pas une date",
    "invalid.not-an-option": "n’est pas l’une des valeurs permises",
    "invalid.not-a-link": "n’est pas un lien vers une fiche",
    "invalid.out-of-range": "n’est pas un nombre entier dans les limites permises",
    "invalid.not-a-language": "une langue autre que l’arabe, le français ou l’anglais",
    "invalid.duplicate-id": "deux éléments partagent un même identifiant",
    invalid: "Cette fiche comporte des erreurs : {reason}", listSeparator: " ; ", unreadable: "Cette version de l’application ne sait pas afficher cette fiche en formulaire : elle est montrée telle qu’elle est enregistrée et ne peut pas être modifiée ici. Mettez l’application à jour ou adressez-vous à un coordinateur.", savedOnDevice: "Enregistré sur cet appareil",
    signedInAs: "Connecté en tant que {name} ({role})", devices: "Appareils", inviteTitle: "Inviter un nouvel appareil", deviceName: "Nom de l’appareil", role: "Rôle", cities: "Villes", person: "Personne", noPerson: "Personne en particulier", createInvite: "Créer l’invitation", inviteLink: "Lien d’invitation (à usage unique, valable jusqu’au {until}) :", copy: "Copier", copied: "Copié", deviceList: "Appareils enregistrés", lastSeen: "Vu pour la dernière fois", never: "jamais", refresh: "Actualiser", status: "État", revokedOn: "révoqué le {when}", revoke: "Révoquer", editDevice: "Modifier", addLink: "Lier une fiche…", notOnPhone: "une fiche pas encore sur ce téléphone", shownAsOf: "Le serveur est injoignable : listes telles qu’au {when}.", saveDevice: "Enregistrer les modifications", revokeConfirm: "Révoquer l’appareil « {name} » ? Il est déconnecté aussitôt et peut remettre ses modifications non synchronisées pour examen.", thisDevice: "cet appareil", quarantineTitle: "Modifications refusées en attente d’examen", quarantineEmpty: "Aucune modification refusée n’attend d’examen.", changesCount: "{n} modifications", "changesCount.one": "{n} modification", accept: "Accepter", discard: "Écarter", coordinatorsOnly: "Cette page est réservée aux coordinateurs.", requestFailed: "La demande a échoué : {reason}", requestUnreached: "le serveur du club n’a pas répondu ; vérifiez la connexion et réessayez.", coordinator: "coordinateur", delegate: "délégué", observer: "observateur",
    language: "Langue", byServer: "le serveur (données initiales)", byThisDevice: "cet appareil (pas encore envoyé)",
    discardDraft: "Quitter ce formulaire ? Ce que vous avez saisi dans la nouvelle fiche n’est pas encore enregistré.",
    draftRestored: "Le formulaire tel que vous l’aviez laissé sur ce téléphone ; la fiche n’est pas encore créée.",
    startAgain: "Recommencer",
    readOnly: "Vous pouvez consulter cette fiche, mais pas la modifier.", lockedAdopted: "Ce procès-verbal est adopté : seuls les coordinateurs peuvent le modifier.", lockedEnded: "Cet accord a pris fin : seuls les coordinateurs peuvent le modifier.", lockedNotOurs: "Cette fiche n’appartient pas à vos villes : seuls les délégués de ses villes et les coordinateurs peuvent la modifier.", due: "échéance le {date}",
    city: "Ville", count: "Nombre", noCity: "Sans ville",
    storageError: "Les données de cet appareil n'ont pas pu être lues : {reason}. Rechargez la page pour les récupérer à nouveau depuis le serveur.",

    "kind.club": "Club", "kind.city": "Ville", "kind.agreement": "Accord", "kind.project": "Projet",
    "kind.meeting": "Réunion", "kind.person": "Personne", "kind.report": "Rapport",
    "kinds.club": "Le club", "kinds.city": "Villes", "kinds.agreement": "Accords", "kinds.project": "Projets",
    "kinds.meeting": "Réunions", "kinds.person": "Personnes", "kinds.report": "Rapports",

    "field.name": "Nom", "field.title": "Titre", "field.founded_on": "Date de fondation", "field.seat": "Siège",
    "field.purpose": "Objet", "field.council": "Conseil de coordination", "field.index": "Répertoire des fiches",
    "field.person": "Personne", "field.role": "Rôle", "field.city": "Ville", "field.since": "Depuis", "field.country": "Pays",
    "field.country_code": "Code pays", "field.region": "Région", "field.representative": "Représentant",
    "field.representative_title": "Fonction du représentant", "field.twinning_status": "Statut du jumelage",
    "field.contacts": "Coordonnées", "field.notes": "Notes", "field.kind": "Type", "field.value": "Valeur",
    "field.label": "Libellé", "field.parties": "Parties", "field.domains": "Domaines de coopération",
    "field.approved_on": "Approuvé le", "field.signed_on": "Signé le", "field.in_force_from": "En vigueur à compter du",
    "field.ends_on": "Prend fin le", "field.status": "Statut", "field.commitments": "Engagements", "field.text": "Texte",
    "field.party": "Partie", "field.due": "Échéance", "field.agreement": "Accord", "field.domain": "Domaine",
    "field.owner_city": "Ville porteuse", "field.starts_on": "Début le", "field.budget_note": "Note budgétaire",
    "field.objectives": "Objectifs", "field.milestones": "Jalons", "field.progress_notes": "Notes d'avancement",
    "field.owner": "Responsable", "field.done_on": "Réalisé le", "field.date": "Date", "field.author": "Auteur",
    "field.time": "Heure", "field.place": "Lieu", "field.chair": "Président de séance", "field.attendees": "Présents",
    "field.guests": "Invités", "field.agenda": "Ordre du jour", "field.minutes": "Procès-verbal",
    "field.decisions": "Décisions", "field.adopted": "Adopté", "field.presenter": "Présenté par", "field.outcome": "Suite donnée",
    "field.roles": "Rôles", "field.organisation": "Organisme", "field.report_type": "Type de rapport", "field.links": "Liens",
    "field.archived": "Archivé",

    "value.prospect": "En prospection", "value.approved": "Approuvé", "value.signed": "Signé", "value.active": "Actif",
    "value.suspended": "Suspendu", "value.ended": "Terminé", "value.draft": "Brouillon", "value.in_force": "En vigueur",
    "value.planned": "Prévu", "value.on_hold": "En suspens", "value.done": "Réalisé", "value.cancelled": "Annulé",
    "value.pending": "En attente", "value.in_progress": "En cours", "value.open": "Ouvert", "value.dropped": "Abandonné",
    "value.adopted": "Adopté", "value.rejected": "Rejeté", "value.deferred": "Reporté",
    "value.visit": "Visite", "value.field": "Terrain", "value.progress": "Avancement", "value.other": "Autre",
    "value.phone": "Téléphone", "value.email": "Courriel", "value.address": "Adresse", "value.web": "Site web",
    "value.economic": "Économie", "value.cultural": "Culture", "value.scientific": "Recherche scientifique",
    "value.environmental": "Environnement", "value.governance": "Gouvernance", "value.youth": "Jeunesse",
    "value.sustainable_development": "Développement durable", "value.health": "Santé", "value.education": "Éducation",
    "value.city": "Ville", "value.agreement": "Accord", "value.project": "Projet", "value.meeting": "Réunion",
    "value.person": "Personne", "value.report": "Rapport",
  },

  en: {
    club: "Smara International Club of Twinned Cities",
    signin: "Open the invite link a coordinator sent you to sign this device in.",
    signinFailed: "Could not sign in: ",
    inviteUnknown: "This invite link is not valid: check that it was copied whole, or ask a coordinator for a new one.",
    inviteSpent: "This invite link was already used or has expired: ask a coordinator for a new one.",
    inviteTooMany: "Too many sign-in attempts from this network: wait a minute, then reload the page.",
    signinServer: "The club's server could not complete the sign-in: reload the page in a moment.",
    syncingNow: "Syncing records",
    removeConfirm: "Remove “{item}” and everything written in it? It stays in the record's history.",
    changedMeanwhile: "While you typed, another device had set this to:",
    keepTheirs: "Keep theirs",
    "problem.storage-full": "Not saved on this phone: its storage is full. Free some space; until then, stay online with this page open: the server keeps your changes.",
    "problem.not-saved": "Not saved on this phone: its storage failed. Stay online with this page open: the server keeps your changes.",
    "problem.other": "Something unexpected went wrong.",
    invalidMark: "This record has problems",
    "problem.damaged": "Some data on this phone was damaged; what could be read is kept, and the rest comes back from the server.",
    "problem.protocol": "The server sent something this app cannot read; it will try again.",
    "problem.server": "The server reported a problem with this phone's records or changes.",
    "problem.EditError": "This change cannot be made",
    "problem.NotFoundError": "This record is not on this phone yet",
    "problem.CorruptError": "This record is damaged on this phone",
    "problem.QuotaExceededError": "Not saved on this phone: its storage is full. Free some space; until then, stay online with this page open: the server keeps your changes.",
    "problem.StorageError": "Not saved on this phone: its storage failed. Stay online with this page open: the server keeps your changes.",
    signinUnreached: "the club's server did not answer. Connect to a network, then reload this page to sign in.",
    records: "Records", dashboard: "Dashboard", search: "Search", searchPlaceholder: "Search records…",
    noResults: "No record matches.", new: "New", newRecord: "New {kind}", create: "Create", save: "Save",
    cancel: "Cancel", back: "Back", remove: "Remove", add: "Add", addItem: "Add an item", markDone: "Mark done",
    done: "Done", required: "required", none: "—", yes: "Yes", no: "No",
    history: "History", asOf: "The record as it stood on", show: "Show", current: "Back to the current record",
    notYet: "The record did not exist yet on that date.",
    conflicts: "Disagreements",
    conflictHelp: "Two delegates wrote different values while offline. Choose the one to keep.",
    keep: "Keep this", noConflicts: "No disagreement to resolve.", resolved: "Resolved",
    export: "Export", exportJson: "All records (JSON)", exportCsv: "{kind} (CSV)", exportId: "Identifier", delegateNeedsCity: "A delegate belongs to at least one member city: tick one.",
    agreementsByStatus: "Agreements by status", projectsByCity: "Projects by city",
    overdueMilestones: "Overdue milestones", recentChanges: "Recent changes",
    who: "Who", when: "When", what: "What changed", unknownAuthor: "unknown device", thisRecord: "Record",
    offline: "Offline", connecting: "Connecting…", syncing: "Syncing {n} records", "syncing.one": "Syncing {n} record", upToDate: "Up to date",
    syncError: "Sync error: {reason}", signedOut: "The server no longer accepts this device's sign-in. Your edits stay on this phone; ask a coordinator for a new invite link.", waiting: "{n} changes waiting for the server", "waiting.one": "{n} change waiting for the server", deferred: "{n} records wait their turn: the server takes only so many from one phone each minute", "deferred.one": "{n} record waits its turn: the server takes only so many from one phone each minute",
    refused: "The server refused a change: {reason}", goOnline: "Go online", goOffline: "Work offline",
    refusedChange: "The server did not accept your change to “{field}” in {record}: {why} {kept}",
    refusedRecord: "The server did not accept your change to {record}: {why} {kept}",
    refusalKept: "It stays on this phone, and a coordinator can review it (no. {n}).",
    refusalNotKept: "It stays on this phone.",
    refusalAt: "{field}: {why}",
    reviewChanges: "What it would change", notShown: "The changes cannot be shown: {reason}", valueNow: "Now:", valueProposed: "With this change:",
    "refusal.invalid": "the record would no longer be valid.",
    "refusal.too-deep": "its values nest deeper than the server accepts.",
    "refusal.revoked": "the device was revoked.",
    "refusal.observer": "an observer’s device changes nothing.",
    "refusal.kind-changed": "a record’s kind cannot change.",
    "refusal.unknown-kind": "only coordinators may write a record that names no kind.",
    "refusal.adopted": "the minutes were adopted, and only coordinators may change them.",
    "refusal.ended": "the agreement has ended, and only coordinators may change it.",
    "refusal.not-yours": "delegates change only their cities’ records, the meetings they attend and the reports they wrote.",
    "refusal.club-created": "only coordinators may create the club’s record.",
    "refusal.club-beyond-index": "in the club’s record, delegates may only add or update entries of the index.",
    "refusal.club-index-removed": "only coordinators may remove a record from the club’s index.",
    "refusal.too-large": "the record has reached the largest size the server keeps.",
    "refusal.not-stored": "the server could not store it just now (its storage is failing or full); it is sent again when the phone reconnects.",
    "refusal.unreadable": "the server cannot read its own copy of this record just now; tell a coordinator.",
    "refusal.rate-limited": "the server takes only so many records from one phone a minute; it is sent again shortly.",
    "api.database-unavailable": "the server's database is not answering just now; try again shortly.",
    "api.record-unreadable": "the server cannot read its own copy of this record.",
    "api.not-coordinator": "this device is no longer a coordinator's.",
    "api.revoked": "this device was revoked; it may only hand in its unsynced changes.",
    "api.no-batch": "this batch is no longer among the refused changes.",
    "api.batch-decided": "another coordinator already decided on this batch; the list is up to date.",
    "api.batch-not-applicable": "accepting this batch would leave the record invalid, so it cannot be accepted; discard it, or ask the delegate to write it again.",
    "api.record-busy": "the record is busy just now; try again.",
    "api.unknown-device": "this device is no longer registered on the server.",
    "api.device-revoked": "a revoked device cannot be changed; invite its holder again.",
    "api.last-coordinator": "this is the last coordinator's device that still works: make another device a coordinator first, or nobody could manage devices.",
    "api.changed-meanwhile": "the device was changed meanwhile; try again.",
    recordUnreadable: "{record} cannot be synced just now: the server cannot read its copy of it. Your changes stay on this phone; tell a coordinator.",
    "invalid.not-a-record": "not a twinsync record",
    "invalid.newer-schema": "written by a newer version of twinsync (update the app)",
    "invalid.unknown-kind": "a kind of record this version of the app does not know",
    "invalid.missing": "a required value is missing",
    "invalid.wrong-type": "holds a value of the wrong type",
    "invalid.not-a-date": "not a date",
    "invalid.not-an-option": "not one of the allowed values",
    "invalid.not-a-link": "not a link to a record",
    "invalid.out-of-range": "not a whole number within the allowed bounds",
    "invalid.not-a-language": "a language other than Arabic, French or English",
    "invalid.duplicate-id": "two items share one identifier",
    invalid: "This record has problems: {reason}", listSeparator: "; ", unreadable: "This version of the app cannot show this record as a form: it is shown as stored and cannot be changed here. Update the app, or ask a coordinator.", savedOnDevice: "Saved on this device",
    signedInAs: "Signed in as {name} ({role})", devices: "Devices", inviteTitle: "Invite a new device", deviceName: "Device name", role: "Role", cities: "Cities", person: "Person", noPerson: "Nobody in particular", createInvite: "Create the invite", inviteLink: "Invite link (one use, valid until {until}):", copy: "Copy", copied: "Copied", deviceList: "Registered devices", lastSeen: "Last seen", never: "never", refresh: "Refresh", status: "Status", revokedOn: "revoked on {when}", revoke: "Revoke", editDevice: "Change", addLink: "Link a record…", notOnPhone: "a record not yet on this phone", shownAsOf: "The server cannot be reached: the lists as they were on {when}.", saveDevice: "Save the changes", revokeConfirm: "Revoke the device “{name}”? It is disconnected at once and can hand in its unsynced changes for review.", thisDevice: "this device", quarantineTitle: "Refused changes awaiting review", quarantineEmpty: "No refused changes are awaiting review.", changesCount: "{n} changes", "changesCount.one": "{n} change", accept: "Accept", discard: "Discard", coordinatorsOnly: "This page is for coordinators.", requestFailed: "The request failed: {reason}", requestUnreached: "the club's server did not answer; check the connection and try again.", coordinator: "coordinator", delegate: "delegate", observer: "observer",
    language: "Language", byServer: "the server (initial data)", byThisDevice: "this device (not sent yet)",
    discardDraft: "Leave this form? What you typed in the new record is not saved yet.",
    draftRestored: "The form as you left it on this phone; the record is not created yet.",
    startAgain: "Start again",
    readOnly: "You can read this record but not change it.", lockedAdopted: "These minutes are adopted: only coordinators may change them.", lockedEnded: "This agreement has ended: only coordinators may change it.", lockedNotOurs: "This record belongs to none of your cities: only its cities' delegates and coordinators may change it.", due: "due {date}",
    city: "City", count: "Count", noCity: "No city",
    storageError: "The data on this device could not be read: {reason}. Reload to fetch it again from the server.",

    "kind.club": "Club", "kind.city": "City", "kind.agreement": "Agreement", "kind.project": "Project",
    "kind.meeting": "Meeting", "kind.person": "Person", "kind.report": "Report",
    "kinds.club": "The club", "kinds.city": "Cities", "kinds.agreement": "Agreements", "kinds.project": "Projects",
    "kinds.meeting": "Meetings", "kinds.person": "People", "kinds.report": "Reports",

    "field.name": "Name", "field.title": "Title", "field.founded_on": "Founded on", "field.seat": "Seat",
    "field.purpose": "Purpose", "field.council": "Coordination council", "field.index": "Index of records",
    "field.person": "Person", "field.role": "Role", "field.city": "City", "field.since": "Since", "field.country": "Country",
    "field.country_code": "Country code", "field.region": "Region", "field.representative": "Representative",
    "field.representative_title": "Representative's title", "field.twinning_status": "Twinning status",
    "field.contacts": "Contacts", "field.notes": "Notes", "field.kind": "Type", "field.value": "Value",
    "field.label": "Label", "field.parties": "Parties", "field.domains": "Areas of cooperation",
    "field.approved_on": "Approved on", "field.signed_on": "Signed on", "field.in_force_from": "In force from",
    "field.ends_on": "Ends on", "field.status": "Status", "field.commitments": "Commitments", "field.text": "Text",
    "field.party": "Party", "field.due": "Due", "field.agreement": "Agreement", "field.domain": "Area",
    "field.owner_city": "Lead city", "field.starts_on": "Starts on", "field.budget_note": "Budget note",
    "field.objectives": "Objectives", "field.milestones": "Milestones", "field.progress_notes": "Progress notes",
    "field.owner": "Owner", "field.done_on": "Done on", "field.date": "Date", "field.author": "Author",
    "field.time": "Time", "field.place": "Place", "field.chair": "Chair", "field.attendees": "Attendees",
    "field.guests": "Guests", "field.agenda": "Agenda", "field.minutes": "Minutes",
    "field.decisions": "Decisions", "field.adopted": "Adopted", "field.presenter": "Presenter", "field.outcome": "Outcome",
    "field.roles": "Roles", "field.organisation": "Organisation", "field.report_type": "Report type", "field.links": "Links",
    "field.archived": "Archived",

    "value.prospect": "Prospect", "value.approved": "Approved", "value.signed": "Signed", "value.active": "Active",
    "value.suspended": "Suspended", "value.ended": "Ended", "value.draft": "Draft", "value.in_force": "In force",
    "value.planned": "Planned", "value.on_hold": "On hold", "value.done": "Done", "value.cancelled": "Cancelled",
    "value.pending": "Pending", "value.in_progress": "In progress", "value.open": "Open", "value.dropped": "Dropped",
    "value.adopted": "Adopted", "value.rejected": "Rejected", "value.deferred": "Deferred",
    "value.visit": "Visit", "value.field": "Field work", "value.progress": "Progress", "value.other": "Other",
    "value.phone": "Phone", "value.email": "Email", "value.address": "Address", "value.web": "Website",
    "value.economic": "Economy", "value.cultural": "Culture", "value.scientific": "Science",
    "value.environmental": "Environment", "value.governance": "Governance", "value.youth": "Youth",
    "value.sustainable_development": "Sustainable development", "value.health": "Health", "value.education": "Education",
    "value.city": "City", "value.agreement": "Agreement", "value.project": "Project", "value.meeting": "Meeting",
    "value.person": "Person", "value.report": "Report",
  },
};

/** The plural categories a string may have variants for (`key.one`, ...). */
export const PLURAL_CATEGORIES = ["zero", "one", "two", "few", "many"];

/**
 * `key` for a count of `n`, with `{n}` written as the language writes
 * numbers: the variant for the language's plural category of `n` (`key.one`,
 * `key.two`, `key.few`, `key.many`: Arabic has them all) where the language
 * has one, else `key` itself.
 */
export function plural(lang, key, n) {
  const category = formatter("plural", lang, (loc) => new Intl.PluralRules(loc)).select(n);
  const variant = `${key}.${category}`;
  const chosen = STRINGS[lang]?.[variant] !== undefined ? variant : key;
  return t(lang, chosen, { n: formatNumber(lang, n) });
}

// Translate `key` in `lang`, replacing `{name}` placeholders from `vars`.
// Falls back to English, then to the key itself; unknown placeholders stay as written.
export function t(lang, key, vars = {}) {
  return pieces(lang, key, vars).join("");
}

/**
 * The string for `key` as pieces, in order: its text, and each `{name}`
 * given in `vars` as `wrap(value)` (a name not given stays as written).
 */
export function pieces(lang, key, vars = {}, wrap = String) {
  const text = STRINGS[lang]?.[key] ?? STRINGS.en[key] ?? key;
  const out = [];
  let at = 0;
  for (const m of text.matchAll(/\{(\w+)\}/g)) {
    if (m.index > at) out.push(text.slice(at, m.index));
    const value = vars && Object.hasOwn(vars, m[1]) ? vars[m[1]] : undefined;
    out.push(value !== undefined && value !== null ? wrap(value) : m[0]);
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

export function locale(lang) {
  return LOCALES[lang] ?? LOCALES.en;
}

const formatters = new Map();
function formatter(kind, lang, make) {
  const id = `${kind}:${lang}`;
  if (!formatters.has(id)) formatters.set(id, make(locale(lang)));
  return formatters.get(id);
}

// A calendar date "YYYY-MM-DD", shown in UTC so it never shifts by a day.
/** Items run together as a list in the reader's language. */
export function listOf(lang, items) {
  return items.join(lang === "ar" ? "، " : ", ");
}

export function formatDate(lang, iso) {
  if (iso === null || iso === undefined || iso === "") return "";
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(iso));
  if (!m) return iso;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d); // unlike Date.UTC, keeps years 0–99 as written
  if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return iso;
  return formatter("date", lang, (loc) => new Intl.DateTimeFormat(loc, { dateStyle: "medium", timeZone: "UTC" })).format(date);
}

// A moment given in seconds since the epoch, shown in the device's time zone.
export function formatDateTime(lang, secondsSinceEpoch) {
  if (!secondsSinceEpoch) return "";
  const date = new Date(Number(secondsSinceEpoch) * 1000);
  if (Number.isNaN(date.getTime())) return "";
  return formatter("datetime", lang, (loc) => new Intl.DateTimeFormat(loc, { dateStyle: "medium", timeStyle: "short" })).format(date);
}

export function formatNumber(lang, n) {
  return formatter("number", lang, (loc) => new Intl.NumberFormat(loc)).format(n);
}
